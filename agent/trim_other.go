//go:build !linux

package agent

// releaseStartupPages is Linux's (trim_linux.go).
func releaseStartupPages() {}
