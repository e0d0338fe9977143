// stackweave context switch for x86_64, System V ABI, ELF.
//
// Pulled into the crate by src/context/x86_64.rs with
// `global_asm!(include_str!(..), options(raw))`; rustc assembles module-level
// assembly in Intel syntax (no `%` prefixes), so this file is written in it.
//
// Three routines:
//
//   stackweave_resume     called (a real `call`) by the resumer: saves the resumer's
//                         callee-saved registers on its own stack, records that stack
//                         pointer in the coroutine's LINK slot, and jumps into the
//                         coroutine.
//   stackweave_suspend    entered with `jmp` (never `call`) from inline assembly in
//                         the coroutine: saves the coroutine and `ret`s into the
//                         resumer. That `ret` pops exactly the return address that
//                         the resumer's `call stackweave_resume` pushed, so the
//                         return-stack buffer stays balanced: one call, one ret, per
//                         round trip, and neither side ever `ret`s across stacks to
//                         an address the predictor has not seen pushed.
//   stackweave_trampoline the first "resume address" of every coroutine: calls the
//                         Rust entry shim. Its DWARF CFI says that its caller is
//                         whoever resumed the coroutine most recently, so backtraces,
//                         gdb and perf walk from the coroutine's stack into the
//                         resumer's.
//
// Both suspended sides are saved in the same 7-word frame, so one CFI shape describes
// them and the Rust side builds a fresh coroutine by writing such a frame:
//
//            higher addresses
//   base ->  +-----------------------+  (top of the coroutine stack, 16-byte aligned)
//   base-8   | SAVED_SP              |  coroutine's rsp while it is suspended
//   base-16  | LINK                  |  resumer's rsp while the coroutine runs
//            +-----------------------+  <- rsp inside stackweave_trampoline
//            | trampoline ret addr   |  pushed by `call r13` (never returned to)
//            | entry shim frames ... |
//            | user code frames ...  |
//
//   A saved frame (SAVED_SP or LINK points at its lowest word):
//     sp+48  return / resume address   (the resumer: return address of its
//                                       `call stackweave_resume`; the coroutine: the
//                                       label after its inline `jmp`)
//     sp+40  rbp
//     sp+32  rbx
//     sp+24  r12
//     sp+16  r13
//     sp+8   r14
//     sp+0   r15
//
// A fresh coroutine's frame holds: resume address = stackweave_trampoline,
// rbx = the Rust entry function, r12 = its data pointer, r13 = the entry shim,
// rbp = 0 (ends frame-pointer walks), r14 = r15 = 0.
//
// Only callee-saved state is switched: rbx, rbp, r12-r15, rsp and the return address.
// MXCSR and the x87 control word are not: Rust code may not change them.
//
// These numbers are mirrored by named constants in src/context/x86_64.rs
// (SAVED_SP_OFFSET, LINK_OFFSET, FRAME_WORDS, ...) and checked against the table
// `stackweave_x86_64_layout` at the end of this file by a unit test.

.set SW_SAVED_SP, 8            // base - SW_SAVED_SP holds the suspended coroutine's rsp
.set SW_LINK, 16               // base - SW_LINK holds the resumer's rsp
.set SW_FRAME, 56              // 7 words: six callee-saved registers + return address

.text

// ---------------------------------------------------------------------------------
// usize stackweave_resume(usize value, u8 *base)
//   rdi = value handed to the coroutine (arrives in its rax)
//   rsi = top of the coroutine stack
//   returns (rax) the value the coroutine handed to stackweave_suspend
// ---------------------------------------------------------------------------------
.globl stackweave_resume
.hidden stackweave_resume
.type stackweave_resume,@function
.p2align 4
stackweave_resume:
    .cfi_startproc                    // CFA = rsp + 8, return address at CFA - 8
    push rbp                          // save the resumer's callee-saved registers...
    .cfi_adjust_cfa_offset 8
    .cfi_offset rbp, -16
    push rbx
    .cfi_adjust_cfa_offset 8
    .cfi_offset rbx, -24
    push r12
    .cfi_adjust_cfa_offset 8
    .cfi_offset r12, -32
    push r13
    .cfi_adjust_cfa_offset 8
    .cfi_offset r13, -40
    push r14
    .cfi_adjust_cfa_offset 8
    .cfi_offset r14, -48
    push r15                          // ...the resumer's frame is now complete
    .cfi_adjust_cfa_offset 8
    .cfi_offset r15, -56
    mov [rsi - SW_LINK], rsp          // LINK = resumer's rsp: the coroutine's way back
    mov rsp, [rsi - SW_SAVED_SP]      // switch to the coroutine's saved frame; from here
                                      // on the CFA rule describes the coroutine's frame,
                                      // which has the same shape (CFA = rsp + 56)
    mov rax, rdi                      // the value travels in rax
    pop r15                           // restore the coroutine's callee-saved registers
    .cfi_adjust_cfa_offset -8
    .cfi_same_value r15
    pop r14
    .cfi_adjust_cfa_offset -8
    .cfi_same_value r14
    pop r13
    .cfi_adjust_cfa_offset -8
    .cfi_same_value r13
    pop r12
    .cfi_adjust_cfa_offset -8
    .cfi_same_value r12
    pop rbx
    .cfi_adjust_cfa_offset -8
    .cfi_same_value rbx
    pop rbp
    .cfi_adjust_cfa_offset -8
    .cfi_same_value rbp
    pop rcx                           // the coroutine's resume address (rcx is scratch)
    .cfi_adjust_cfa_offset -8
    .cfi_register rip, rcx
    jmp rcx                           // an indirect jump, not a `ret`: the return-stack
                                      // buffer keeps the resumer's return address on top,
                                      // for the `ret` in stackweave_suspend
    .cfi_endproc
.size stackweave_resume, .-stackweave_resume

// ---------------------------------------------------------------------------------
// stackweave_suspend: entered by `jmp` from inline assembly on the coroutine stack
//   rax = resume address (the instruction after the caller's `jmp`)
//   rdi = value handed to the resumer (becomes stackweave_resume's return value)
//   rsi = top of the coroutine stack
//   when the coroutine is resumed, execution continues at rax with the resumer's
//   value in rax and rsp as it was before the jump
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
    push rbp                          // save the coroutine's callee-saved registers...
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbp, 0
    push rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbx, 0
    push r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r12, 0
    push r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r13, 0
    push r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r14, 0
    push r15                          // ...the coroutine's frame is now complete
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r15, 0
    mov [rsi - SW_SAVED_SP], rsp      // SAVED_SP = coroutine's rsp
    mov rsp, [rsi - SW_LINK]          // back onto the resumer's stack, at its frame
                                      // (same shape: CFA = rsp + 56, same offsets)
    mov rax, rdi                      // the value travels in rax
    pop r15                           // restore the resumer's callee-saved registers
    .cfi_adjust_cfa_offset -8
    .cfi_same_value r15
    pop r14
    .cfi_adjust_cfa_offset -8
    .cfi_same_value r14
    pop r13
    .cfi_adjust_cfa_offset -8
    .cfi_same_value r13
    pop r12
    .cfi_adjust_cfa_offset -8
    .cfi_same_value r12
    pop rbx
    .cfi_adjust_cfa_offset -8
    .cfi_same_value rbx
    pop rbp
    .cfi_adjust_cfa_offset -8
    .cfi_same_value rbp
    ret                               // pops the return address of the resumer's
                                      // `call stackweave_resume`: the matched ret
    .cfi_endproc
.size stackweave_suspend, .-stackweave_suspend

// ---------------------------------------------------------------------------------
// stackweave_trampoline: the resume address of a fresh coroutine.
//   rax = the value of the first resume, rbx = entry, r12 = data, r13 = entry shim,
//   rsp = base - SW_LINK (16-byte aligned, pointing at the LINK slot)
//   calls shim(value, data, base, entry), which never returns
// ---------------------------------------------------------------------------------
.globl stackweave_trampoline
.hidden stackweave_trampoline
.type stackweave_trampoline,@function
.p2align 4
stackweave_trampoline:
    .cfi_startproc simple
    // CFA = [rsp] + SW_FRAME: LINK holds the resumer's rsp, and its frame sits there.
    // DW_CFA_def_cfa_expression (0x0f), length 5:
    //   DW_OP_breg7 (0x77) rsp + 0,  DW_OP_deref (0x06),  DW_OP_plus_uconst (0x23) 56
    .cfi_escape 0x0f, 0x05, 0x77, 0x00, 0x06, 0x23, 0x38
    .cfi_offset rip, -8               // the resumer's return address
    .cfi_offset rbp, -16              // and its callee-saved registers, as
    .cfi_offset rbx, -24              // stackweave_resume saved them
    .cfi_offset r12, -32
    .cfi_offset r13, -40
    .cfi_offset r14, -48
    .cfi_offset r15, -56
    mov rdi, rax                      // arg 1: the first resume's value
    mov rsi, r12                      // arg 2: data
    lea rdx, [rsp + SW_LINK]          // arg 3: base (top of this stack)
    mov rcx, rbx                      // arg 4: entry
    call r13                          // shim(value, data, base, entry) -> !
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
    .quad SW_FRAME
.text
