module github.com/vtcluster/vtcluster

go 1.26.0

require (
	github.com/kolo/xmlrpc v0.0.0-20220921171641-a4b6fa1dd06b
	github.com/kr/fs v0.1.0
	github.com/pkg/sftp v1.13.12
	github.com/tidwall/gjson v1.20.0
	github.com/tidwall/match v1.1.1
	github.com/tidwall/pretty v1.2.0
	github.com/urfave/cli/v3 v3.14.0
	golang.org/x/crypto v0.58.0
	golang.org/x/sys v0.49.0
)
