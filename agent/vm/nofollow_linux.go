package vm

import "syscall"

const noFollow = syscall.O_NOFOLLOW
