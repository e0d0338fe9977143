// stackweave context switch for x86_64, System V ABI, ELF.
//
// Pulled into the crate by src/rt/context/x86_64.rs with
// `global_asm!(include_str!(..), options(raw))`; rustc assembles module-level
// assembly in Intel syntax (no `%` prefixes), so this file is written in it.
//
// Four routines. The Rust side reaches each from a one-instruction inline-assembly
// block that declares what it clobbers (src/rt/context/x86_64.rs):
//
//   stackweave_resume     reached by `call` from the resumer: saves the resumer's
//                         frame on its own stack, records its stack pointer in the
//                         coroutine's LINK slot, restores the coroutine's frame and
//                         jumps (`jmp`, not `ret`) to its resume address.
//   stackweave_suspend    reached by `jmp` (never `call`) from the coroutine: saves
//                         the coroutine's frame, hands its stack pointer back in rdx,
//                         restores the resumer's frame and `ret`s. That `ret` pops
//                         exactly the return address that the resumer's
//                         `call stackweave_resume` pushed, so the return-stack buffer
//                         stays balanced: one call and one ret per round trip, and no
//                         `ret` ever goes to an address the predictor has not seen
//                         pushed.
//   stackweave_finish     the last suspend of a context whose entry has returned:
//                         like stackweave_suspend, but saves nothing and hands back
//                         rdx = 0 ("finished").
//   stackweave_trampoline the resume address of every fresh coroutine: enters the
//                         Rust entry shim with a `jmp`, after pushing a return
//                         address into itself (a `call` would push a return-stack
//                         buffer entry that no `ret` ever pops, and the first
//                         suspend's `ret`, and every return after it, would
//                         mispredict). Its DWARF CFI says that its caller is whoever
//                         resumed the coroutine most recently, so backtraces, gdb and
//                         perf walk from the coroutine's stack into the resumer's.
//
// What is saved: the callee-saved state of the System V ABI is rbx, rbp, r12-r15,
// rsp and the return address. These routines save rbx, rbp, rsp and the
// return/resume address; r12-r15 are declared clobbered by the inline assembly on
// both sides, so the compiler saves them only where they hold live values (in a loop
// of resumes, once, outside the loop). rbx and rbp cannot be declared clobbered
// (LLVM reserves them), hence the pushes. MXCSR and the x87 control word are not
// switched: Rust code may not change them.
//
// Register contract (every routine):
//   rdi  the value handed across (in both directions)
//   rsi  the top of the coroutine's stack
//   rdx  the coroutine's saved stack pointer: given to stackweave_resume, handed back
//        by stackweave_suspend (0 from stackweave_finish); the Rust side keeps it
//   rax, rcx scratch
//
// Both suspended sides are saved as the same 3-word frame, so one CFI shape describes
// them, and the Rust side builds a fresh coroutine by writing such a frame:
//
//            higher addresses
//   top ->   +-----------------------+  16-byte aligned (owner data may sit above)
//   top-8    | LINK                  |  resumer's rsp while the coroutine runs
//   top-16   | SIZE                  |  bytes usable below top (for `is_current`)
//   top-24   | ENTRY                 |  Rust entry shim (read once by the trampoline)
//   top-32   | DATA                  |  its data pointer (read once by the trampoline)
//            +-----------------------+  <- rsp in the trampoline (top - SW_START)
//            | trampoline ret addr   |  pushed before `jmp rcx` (never returned to)
//            | shim, entry, user     |
//            | frames ...            |
//
//   A saved frame (rdx / Context::sp points at a coroutine's, LINK at the
//   resumer's):
//     sp+16  return / resume address  (the resumer: return address of its
//                                      `call stackweave_resume`; the coroutine: the
//                                      label after its `jmp stackweave_suspend`)
//     sp+8   rbp
//     sp+0   rbx
//
// A fresh coroutine's frame, at top - SW_START - SW_FRAME, holds: rbx = 0,
// rbp = 0 (ends frame-pointer walks), resume address = stackweave_trampoline.
//
// The offsets are mirrored by named constants in src/rt/context/x86_64.rs
// (LINK_OFFSET, ...) and checked against the table `stackweave_x86_64_layout` at the
// end of this file by a unit test.

.set SW_LINK, 8                // top - SW_LINK holds the resumer's rsp
.set SW_SIZE, 16               // top - SW_SIZE holds the bytes usable below top
.set SW_ENTRY, 24              // top - SW_ENTRY holds the Rust shim (fresh coroutine)
.set SW_DATA, 32               // top - SW_DATA holds its data pointer (fresh coroutine)
.set SW_START, 32              // top - SW_START: rsp in the trampoline
.set SW_FRAME, 24              // 3 words: rbx, rbp, return address

.text

// ---------------------------------------------------------------------------------
// stackweave_resume: reached by `call`
//   in:  rdi = value, rsi = top, rdx = the coroutine's saved frame
//   out: (when the coroutine suspends) rdi = its value, rdx = its new saved frame,
//        or 0 if it finished; rbx, rbp, rsp preserved
// ---------------------------------------------------------------------------------
.globl stackweave_resume
.hidden stackweave_resume
.type stackweave_resume,@function
.p2align 4
stackweave_resume:
    .cfi_startproc                    // CFA = rsp + 8, return address at CFA - 8
    push rbp                          // the resumer's rbp...
    .cfi_adjust_cfa_offset 8
    .cfi_offset rbp, -16
    push rbx                          // ...and rbx: its frame [rbx, rbp, ret] is done
    .cfi_adjust_cfa_offset 8
    .cfi_offset rbx, -24
    mov [rsi - SW_LINK], rsp          // LINK = the resumer's frame: the way back
    mov rsp, rdx                      // onto the coroutine's frame, which has the same
                                      // shape: the CFI above describes it too
    pop rbx                           // the coroutine's rbx
    .cfi_adjust_cfa_offset -8
    .cfi_same_value rbx
    pop rbp                           // the coroutine's rbp
    .cfi_adjust_cfa_offset -8
    .cfi_same_value rbp
    pop rcx                           // its resume address
    .cfi_adjust_cfa_offset -8
    .cfi_register rip, rcx
    jmp rcx                           // an indirect jump, not a `ret`: the resumer's
                                      // return address stays on top of the
                                      // return-stack buffer for stackweave_suspend
    .cfi_endproc
.size stackweave_resume, .-stackweave_resume

// ---------------------------------------------------------------------------------
// stackweave_suspend: reached by `jmp` on the coroutine's stack
//   in:  rax = resume address (the label after the caller's `jmp`), rdi = value,
//        rsi = top
//   out: to the resumer, as stackweave_resume's return: rdi = value, rdx = the
//        coroutine's saved frame. When resumed, execution continues at rax with the
//        resumer's value in rdi, rsp as before the jump, rbx and rbp restored.
// ---------------------------------------------------------------------------------
.globl stackweave_suspend
.hidden stackweave_suspend
.type stackweave_suspend,@function
.p2align 4
stackweave_suspend:
    .cfi_startproc
    .cfi_def_cfa rsp, 0               // no return address was pushed: the caller's
    .cfi_register rip, rax            // rsp is the CFA and its pc is in rax
    push rax                          // the resume address: the frame's top word
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rip, 0
    push rbp                          // the coroutine's rbp...
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbp, 0
    push rbx                          // ...and rbx: its frame [rbx, rbp, pc] is done
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbx, 0
    mov rdx, rsp                      // hand the frame back to the resumer
    mov rsp, [rsi - SW_LINK]          // onto the resumer's frame (same shape)
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
// stackweave_finish: reached by `jmp` from the entry shim after the entry returned
//   in:  rdi = the entry's value, rsi = top
//   out: to the resumer: rdi = value, rdx = 0. Never comes back.
// ---------------------------------------------------------------------------------
.globl stackweave_finish
.hidden stackweave_finish
.type stackweave_finish,@function
.p2align 4
stackweave_finish:
    .cfi_startproc
    .cfi_undefined rip                // nothing to return to on this side
    mov rsp, [rsi - SW_LINK]          // onto the resumer's frame
    .cfi_def_cfa rsp, SW_FRAME        // which describes the resumer's caller
    .cfi_offset rip, -8
    .cfi_offset rbp, -16
    .cfi_offset rbx, -24
    xor edx, edx                      // rdx = 0: finished, no frame to keep
    pop rbx                           // the resumer's rbx
    .cfi_adjust_cfa_offset -8
    .cfi_same_value rbx
    pop rbp                           // the resumer's rbp
    .cfi_adjust_cfa_offset -8
    .cfi_same_value rbp
    ret                               // matched with its `call stackweave_resume`
    .cfi_endproc
.size stackweave_finish, .-stackweave_finish

// ---------------------------------------------------------------------------------
// stackweave_trampoline: the resume address of a fresh coroutine, reached by the
// `jmp` in stackweave_resume
//   in:  rdi = the first resume's value, rsi = top, rsp = top - SW_START
//   enters shim(value, data, top), which never returns, as if it called it
// ---------------------------------------------------------------------------------
.globl stackweave_trampoline
.hidden stackweave_trampoline
.type stackweave_trampoline,@function
.p2align 4
stackweave_trampoline:
    .cfi_startproc simple
    // CFA = [LINK] + SW_FRAME: LINK, at rsp + (SW_START - SW_LINK) = rsp + 24, holds
    // the resumer's frame, and the resumer's own frame ends above it.
    // DW_CFA_def_cfa_expression (0x0f), 5 bytes: DW_OP_breg7 (0x77) rsp + 24 (0x18),
    // DW_OP_deref (0x06), DW_OP_plus_uconst (0x23) 24 (0x18)
    .cfi_escape 0x0f, 0x05, 0x77, 0x18, 0x06, 0x23, 0x18
    .cfi_offset rip, -8               // the resumer's return address
    .cfi_offset rbp, -16              // its rbp and rbx, where stackweave_resume
    .cfi_offset rbx, -24              // pushed them
    .cfi_undefined r12                // r12-r15 were saved by the resumer's compiled
    .cfi_undefined r13                // code, not here: unknown at this point
    .cfi_undefined r14
    .cfi_undefined r15
    mov rdx, rsi                      // arg 3: top (arg 1, the value, is in rdi)
    mov rsi, [rdx - SW_DATA]          // arg 2: data
    mov rcx, [rdx - SW_ENTRY]         // the shim
    lea rax, [rip + 1f]               // a return address inside this function, so that
    push rax                          // unwinders find the CFI above (they look up the
    jmp rcx                           // byte before it: the `jmp`); rsp is now as at a
                                      // function entry (8 mod 16)
1:  ud2                               // the shim never returns
    .cfi_endproc
.size stackweave_trampoline, .-stackweave_trampoline

// Layout table read by a unit test to check the Rust constants against this file.
.section .rodata.stackweave_x86_64_layout,"a",@progbits
.globl stackweave_x86_64_layout
.hidden stackweave_x86_64_layout
.p2align 3
stackweave_x86_64_layout:
    .quad SW_LINK
    .quad SW_SIZE
    .quad SW_ENTRY
    .quad SW_DATA
    .quad SW_START
    .quad SW_FRAME
.text
