// stackweave context switch for x86_64, System V ABI, ELF.
//
// Pulled into the crate by src/context/x86_64.rs with
// `global_asm!(include_str!(..), options(raw))`; rustc assembles module-level
// assembly in Intel syntax (no `%` prefixes), so this file is written in it.
//
// The switch itself is two short inline-assembly sequences in src/context/x86_64.rs
// (inline, so that a round trip takes no extra jumps or calls); this file holds the
// one routine that must be a real function, and the frame contract all three share.
//
//   resume (inline, the resumer):   push rbp; push rbx; call [rdx]; pop rbx; pop rbp
//       rdx = the suspended coroutine's stack pointer, whose lowest word is its
//       resume address; rdi = the value handed over; rsi = the top of its stack.
//       The `call` pushes the resumer's return address and enters the coroutine.
//   suspend (inline, the coroutine): push rbp; push rbx; push <label>; rdx = rsp;
//       rsp = LINK; ret; label: (resumed) LINK = rsp; rsp = rdx + 8; pop rbx; pop rbp
//       The `ret` pops exactly the return address that the resumer's `call` pushed,
//       so the return-stack buffer stays balanced: one call and one ret per round
//       trip, and no `ret` ever goes to an address the predictor has not seen pushed.
//       rdx carries the coroutine's stack pointer back; the resumer stores it.
//   stackweave_trampoline (below): the resume address of every fresh coroutine. It
//       does what the suspend's label does, then enters the Rust entry shim with a
//       `jmp` after pushing a return address into itself (a `call` would push a
//       return-stack-buffer entry that no `ret` ever pops: the first suspend's `ret`
//       would mispredict, and so would every return after it). Its DWARF CFI says
//       that its caller is whoever resumed the coroutine most recently, so
//       backtraces, gdb and perf walk from the coroutine's stack into the resumer's.
//
// What is saved: the callee-saved state of the System V ABI is rbx, rbp, r12-r15,
// rsp and the return address. The sequences save rbx, rbp, rsp and the return/resume
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
//   top-8    | LINK                  |  resumer's rsp while the coroutine runs
//   top-16   | SIZE                  |  bytes usable below top (for `is_current`)
//   top-24   | ENTRY                 |  Rust entry shim (read once by the trampoline)
//   top-32   | DATA                  |  its data pointer (read once by the trampoline)
//            +-----------------------+  <- rsp when the trampoline enters the shim
//            | trampoline ret addr   |  pushed before `jmp rcx` (never returned to)
//            | shim, entry, user     |
//            | frames ...            |
//
//   A saved frame (the Rust side keeps the coroutine's; LINK points at the
//   resumer's):
//     sp+16  rbp
//     sp+8   rbx
//     sp+0   return / resume address  (the resumer: return address of its
//                                      `call [rdx]`; the coroutine: the label in
//                                      its suspend sequence)
//   The resumer's frame ends where its rsp was before the resume sequence: at
//   LINK + SW_FRAME, the canonical frame address (CFA) of the trampoline's CFI.
//
// A fresh coroutine's frame, at top - SW_START - SW_FRAME, holds: resume address =
// stackweave_trampoline, rbx = 0, rbp = 0 (ends frame-pointer walks).
//
// The offsets are mirrored by named constants in src/context/x86_64.rs
// (LINK_OFFSET, ...) and checked against the table `stackweave_x86_64_layout` at the
// end of this file by a unit test.

.set SW_LINK, 8                // top - SW_LINK holds the resumer's rsp
.set SW_SIZE, 16               // top - SW_SIZE holds the bytes usable below top
.set SW_ENTRY, 24              // top - SW_ENTRY holds the Rust shim (fresh coroutine)
.set SW_DATA, 32               // top - SW_DATA holds its data pointer (fresh coroutine)
.set SW_START, 32              // top - SW_START: rsp when the shim is entered
.set SW_FRAME, 24              // 3 words: return address, rbx, rbp

.text

// ---------------------------------------------------------------------------------
// stackweave_trampoline: the resume address of a fresh coroutine, reached by the
// resumer's `call [rdx]`
//   rdi = the value of the first resume, rsi = top of the coroutine stack,
//   rdx = the fresh frame (top - SW_START - SW_FRAME), rsp = the resumer's frame
//   enters shim(value, data, top), which never returns, as if it called it, with
//   rsp = top - SW_START (16-byte aligned, as at a call)
// ---------------------------------------------------------------------------------
.globl stackweave_trampoline
.hidden stackweave_trampoline
.type stackweave_trampoline,@function
.p2align 4
stackweave_trampoline:
    // CFA = the resumer's rsp before its resume sequence; its frame lies below it.
    .cfi_startproc simple
    .cfi_def_cfa rsp, SW_FRAME        // rsp = the resumer's frame
    .cfi_offset rip, -24              // its return address
    .cfi_offset rbx, -16              // its rbx and rbp, where the resume sequence
    .cfi_offset rbp, -8               // pushed them
    .cfi_undefined r12                // r12-r15 were saved by the resumer's compiled
    .cfi_undefined r13                // code, not here: unknown at this point
    .cfi_undefined r14
    .cfi_undefined r15
    mov [rsi - SW_LINK], rsp          // LINK = resumer's rsp: the coroutine's way back
    lea rsp, [rdx + 8]                // onto the fresh frame, past its resume address
    // From here CFA = [LINK] + SW_FRAME, with LINK (top - SW_LINK) at rsp + 40 now
    // (rsp = top - SW_START - SW_FRAME + 8). DW_CFA_def_cfa_expression (0x0f),
    // 5 bytes: DW_OP_breg7 (0x77) rsp + 40 (0x28), DW_OP_deref (0x06),
    // DW_OP_plus_uconst (0x23) 24 (0x18).
    .cfi_escape 0x0f, 0x05, 0x77, 0x28, 0x06, 0x23, 0x18
    pop rbx                           // 0
    .cfi_escape 0x0f, 0x05, 0x77, 0x20, 0x06, 0x23, 0x18    // LINK at rsp + 32
    pop rbp                           // 0: ends frame-pointer walks
    .cfi_escape 0x0f, 0x05, 0x77, 0x18, 0x06, 0x23, 0x18    // LINK at rsp + 24
    mov rdx, rsi                      // arg 3: top of this stack
    mov rsi, [rsi - SW_DATA]          // arg 2: data (arg 1, the value, is in rdi)
    mov rcx, [rdx - SW_ENTRY]         // the shim
    lea rax, [rip + 1f]               // a return address inside this function, so
    push rax                          // that unwinders find the CFI above (they look
    jmp rcx                           // up the byte before it: the `jmp`); the last
                                      // rule holds for rsp as the shim's CFA
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
