package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/vtcluster/vtcluster/runner"
)

func testsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "tests",
		Usage: "inspect multihost test spec files",
		Description: `A spec file is JSON: {"tests": [...]} or a single test object. Each test
names its nodes (tag -> selectors), a body (a controller command and/or
steps run on the nodes), a timeout, tags and files to collect.

Examples:
   vtcluster tests list tests/migrate.json
   vtcluster tests list --json tests/*.json`,
		Commands: []*cli.Command{testsListCommand(e)},
	}
}

// testJSON is one test in "tests list --json", the contract with the
// Python shim's resolver: it makes one Runnable per entry, kind
// "multihost", with this uri, the keyword argument test=<name> and this
// identifier.
type testJSON struct {
	File       string              `json:"file"`
	Name       string              `json:"name"`
	URI        string              `json:"uri"`
	Identifier string              `json:"identifier"`
	Tags       map[string][]string `json:"tags"`
	Nodes      []string            `json:"nodes"`
	// Timeout is in seconds; null when the test sets none.
	Timeout *float64 `json:"timeout"`
}

func testsListCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list the tests of spec files, validating them",
		ArgsUsage: "FILE...",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON instead of text"}},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			files := cmd.Args().Slice()
			if len(files) == 0 {
				return usageError{errors.New("tests list: give at least one spec FILE")}
			}
			// Every file is checked before anything is printed, so a
			// consumer of --json never sees a partial list.
			var list []testJSON
			var errs []error
			for _, f := range files {
				spec, err := runner.LoadSpecFile(f)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				for _, t := range spec.Tests {
					entry := testJSON{File: f, Name: t.Name, URI: f, Identifier: spec.Identifier(t),
						Tags: t.Tags, Nodes: t.NodeTags()}
					if entry.Tags == nil {
						entry.Tags = map[string][]string{}
					}
					if t.Timeout > 0 {
						s := t.Timeout.Seconds()
						entry.Timeout = &s
					}
					list = append(list, entry)
				}
			}
			if len(errs) > 0 {
				return errors.Join(errs...)
			}
			if cmd.Bool("json") {
				if list == nil {
					list = []testJSON{}
				}
				data, err := json.MarshalIndent(list, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(e.stdout, "%s\n", data)
				return err
			}
			for _, t := range list {
				nodes := "no nodes"
				if len(t.Nodes) > 0 {
					nodes = "nodes: " + strings.Join(t.Nodes, ", ")
				}
				fmt.Fprintf(e.stdout, "%s  (%s)\n", t.Identifier, nodes)
			}
			return nil
		},
	}
}
