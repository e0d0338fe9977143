// stackweave context switch for x86_64, System V ABI, ELF.
//
// Pulled into the crate by src/context/x86_64.rs with
// `global_asm!(include_str!(..), options(raw))`; rustc assembles module-level
// assembly in Intel syntax (no `%` prefixes), so this file is written in it.
//
// Three routines, each reached from inline assembly in src/context/x86_64.rs:
//
//   stackweave_resume     reached by `call` from the resumer: saves the resumer's
//                         frame on its own stack, records that stack pointer in the
//                         coroutine's LINK slot, and jumps into the coroutine.
//   stackweave_suspend    reached by `jmp` (never `call`) from the coroutine: saves
//                         the coroutine's frame and `ret`s into the resumer. That
//                         `ret` pops exactly the return address that the resumer's
//                         `call stackweave_resume` pushed, so the return-stack buffer
//                         stays balanced: one call and one ret per round trip, and no
//                         `ret` ever goes to an address the predictor has not seen
//                         pushed.
//   stackweave_trampoline the first resume address of every coroutine: calls the Rust
//                         entry shim. Its DWARF CFI says that its caller is whoever
//                         resumed the coroutine most recently, so backtraces, gdb and
//                         perf walk from the coroutine's stack into the resumer's.
//
// What is saved: the callee-saved state of the System V ABI is rbx, rbp, r12-r15,
// rsp and the return address. The routines save rbx, rbp, rsp and the return/resume
// address themselves; r12-r15 are declared clobbered by the inline assembly on both
// sides, so the compiler saves them only where they hold live values (in a loop of
// resumes, once, outside the loop). rbx and rbp cannot be declared clobbered (LLVM
// reserves them), hence the pushes. MXCSR and the x87 control word are not switched:
// Rust code may not change them.
//
// Both suspended sides are saved in the same 3-word frame, so one CFI shape
// describes them, and the Rust side builds a fresh coroutine by writing such a frame:
//
//            higher addresses
//   top ->   +-----------------------+  16-byte aligned (owner data may sit above)
//   top-8    | SAVED_SP              |  coroutine's rsp while it is suspended
//   top-16   | LINK                  |  resumer's rsp while the coroutine runs
//   top-24   | ENTRY                 |  Rust entry function (read once by the shim)
//   top-32   | DATA                  |  its data pointer    (read once by the shim)
//            +-----------------------+  <- rsp inside stackweave_trampoline
//            | trampoline ret addr   |  pushed by `call rbx` (never returned to)
//            | shim, entry, user     |
//            | frames ...            |
//
//   A saved frame (SAVED_SP or LINK points at its lowest word):
//     sp+16  return / resume address  (the resumer: return address of its
//                                      `call stackweave_resume`; the coroutine: the
//                                      label after its inline `jmp`)
//     sp+8   rbp
//     sp+0   rbx
//
// A fresh coroutine's frame, at top-56, holds: resume address =
// stackweave_trampoline, rbp = 0 (ends frame-pointer walks), rbx = the entry shim.
//
// The offsets are mirrored by named constants in src/context/x86_64.rs
// (SAVED_SP_OFFSET, LINK_OFFSET, ...) and checked against the table
// `stackweave_x86_64_layout` at the end of this file by a unit test.

.set SW_SAVED_SP, 8            // top - SW_SAVED_SP holds the suspended coroutine's rsp
.set SW_LINK, 16               // top - SW_LINK holds the resumer's rsp
.set SW_ENTRY, 24              // top - SW_ENTRY holds the Rust entry (fresh coroutine)
.set SW_DATA, 32               // top - SW_DATA holds its data pointer (fresh coroutine)
.set SW_FRAME, 24              // 3 words: rbx, rbp, return address

.text

// ---------------------------------------------------------------------------------
// stackweave_resume: reached by `call`
//   rdi = value handed to the coroutine (arrives in its rax)
//   rsi = top of the coroutine stack
//   returns in rax the value the coroutine handed to stackweave_suspend
//   preserves rbx, rbp, rsp; r12-r15 and all caller-saved registers are clobbered
// ---------------------------------------------------------------------------------
.globl stackweave_resume
.hidden stackweave_resume
.type stackweave_resume,@function
.p2align 4
stackweave_resume:
    .cfi_startproc                    // CFA = rsp + 8, return address at CFA - 8
    push rbp                          // save the resumer's rbp...
    .cfi_adjust_cfa_offset 8
    .cfi_offset rbp, -16
    push rbx                          // ...and rbx: the resumer's frame is complete
    .cfi_adjust_cfa_offset 8
    .cfi_offset rbx, -24
    mov [rsi - SW_LINK], rsp          // LINK = resumer's rsp: the coroutine's way back
    mov rsp, [rsi - SW_SAVED_SP]      // onto the coroutine's saved frame; it has the
                                      // same shape, so the CFI above describes it too
    mov rax, rdi                      // the value travels in rax
    pop rbx                           // the coroutine's rbx
    .cfi_adjust_cfa_offset -8
    .cfi_same_value rbx
    pop rbp                           // the coroutine's rbp
    .cfi_adjust_cfa_offset -8
    .cfi_same_value rbp
    pop rcx                           // its resume address (rcx is scratch here)
    .cfi_adjust_cfa_offset -8
    .cfi_register rip, rcx
    jmp rcx                           // an indirect jump, not a `ret`: the resumer's
                                      // return address stays on top of the return-stack
                                      // buffer for the `ret` in stackweave_suspend
    .cfi_endproc
.size stackweave_resume, .-stackweave_resume

// ---------------------------------------------------------------------------------
// stackweave_suspend: reached by `jmp` on the coroutine stack
//   rax = resume address (the instruction after the caller's `jmp`)
//   rdi = value handed to the resumer (becomes stackweave_resume's return value)
//   rsi = top of the coroutine stack
//   when the coroutine is resumed, execution continues at rax with the resumer's
//   value in rax, rsp as it was before the jump, rbx and rbp restored
// ---------------------------------------------------------------------------------
.globl stackweave_suspend
.hidden stackweave_suspend
.type stackweave_suspend,@function
.p2align 4
stackweave_suspend:
    .cfi_startproc
    .cfi_def_cfa rsp, 0               // no return address was pushed: the caller's
    .cfi_register rip, rax            // rsp is the CFA and its pc is in rax
    push rax                          // resume address: the top word of the frame
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rip, 0
    push rbp                          // the coroutine's rbp...
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbp, 0
    push rbx                          // ...and rbx: its frame is complete
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbx, 0
    mov [rsi - SW_SAVED_SP], rsp      // SAVED_SP = coroutine's rsp
    mov rsp, [rsi - SW_LINK]          // back onto the resumer's frame (same shape)
    mov rax, rdi                      // the value travels in rax
    pop rbx                           // the resumer's rbx
    .cfi_adjust_cfa_offset -8
    .cfi_same_value rbx
    pop rbp                           // the resumer's rbp
    .cfi_adjust_cfa_offset -8
    .cfi_same_value rbp
    ret                               // pops the return address of the resumer's
                                      // `call stackweave_resume`: the matched ret
    .cfi_endproc
.size stackweave_suspend, .-stackweave_suspend

// ---------------------------------------------------------------------------------
// stackweave_trampoline: the resume address of a fresh coroutine
//   rax = the value of the first resume, rbx = the entry shim,
//   rsp = top - SW_DATA (16-byte aligned), [rsp] = data, [rsp + 8] = entry
//   calls shim(value, data, top, entry), which never returns
// ---------------------------------------------------------------------------------
.globl stackweave_trampoline
.hidden stackweave_trampoline
.type stackweave_trampoline,@function
.p2align 4
stackweave_trampoline:
    .cfi_startproc simple
    // CFA = [LINK] + SW_FRAME: LINK (at rsp + 16) holds the resumer's rsp, and the
    // resumer's frame sits there. DW_CFA_def_cfa_expression (0x0f), 5 bytes:
    //   DW_OP_breg7 (0x77) rsp + 16 (0x10), DW_OP_deref (0x06),
    //   DW_OP_plus_uconst (0x23) 24 (0x18)
    .cfi_escape 0x0f, 0x05, 0x77, 0x10, 0x06, 0x23, 0x18
    .cfi_offset rip, -8               // the resumer's return address
    .cfi_offset rbp, -16              // its rbp and rbx, where stackweave_resume
    .cfi_offset rbx, -24              // saved them
    .cfi_undefined r12                // r12-r15 were saved by the resumer's compiled
    .cfi_undefined r13                // code, not here: unknown at this point
    .cfi_undefined r14
    .cfi_undefined r15
    mov rdi, rax                      // arg 1: the first resume's value
    mov rsi, [rsp]                    // arg 2: data   (top - SW_DATA)
    mov rcx, [rsp + 8]                // arg 4: entry  (top - SW_ENTRY)
    lea rdx, [rsp + SW_DATA]          // arg 3: top of this stack
    call rbx                          // shim(value, data, top, entry) -> !
    ud2                               // the shim never returns
    .cfi_endproc
.size stackweave_trampoline, .-stackweave_trampoline

// Layout table read by a unit test to check the Rust constants against this file.
.section .rodata.stackweave_x86_64_layout,"a",@progbits
.globl stackweave_x86_64_layout
.hidden stackweave_x86_64_layout
.p2align 3
stackweave_x86_64_layout:
    .quad SW_SAVED_SP
    .quad SW_LINK
    .quad SW_ENTRY
    .quad SW_DATA
    .quad SW_FRAME
.text
