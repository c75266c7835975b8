//go:build !linux

package vm

const noFollow = 0
