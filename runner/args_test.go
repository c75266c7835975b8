package runner

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const runnerArgv0 = "/usr/bin/avocado-runner-multihost"

func strp(s string) *string { return &s }

// Every expectation below was checked against Python 3.11 argparse driving
// Avocado 113.0's BaseRunnerApp with the same argv.
func TestParseCommandLine_accepted(t *testing.T) {
	cases := []struct {
		name string
		argv []string
		want commandArgs
	}{
		{"avocado task-run argv, -s last",
			[]string{"task-run", "-i", "1-spec.json:t", "-j", "abc", "-k", "multihost", "-u", "spec.json", "-c", `{"run.keep_tmp": false}`, "tags=json:{}", "output_dir=/r/1", "test=t", "-s", "/tmp/a/.status_server.sock", "-s", "127.0.0.1:8888"},
			commandArgs{Kind: "multihost", URI: strp("spec.json"), Config: `{"run.keep_tmp": false}`, KeyVals: []string{"tags=json:{}", "output_dir=/r/1", "test=t"}, Identifier: "1-spec.json:t", Category: "test", StatusURIs: []string{"/tmp/a/.status_server.sock", "127.0.0.1:8888"}, JobID: strp("abc")}},
		{"long option with =", []string{"task-run", "--identifier=x", "--status-uri=/a", "--job-id=J"},
			commandArgs{Kind: "multihost", Config: "{}", Identifier: "x", Category: "test", StatusURIs: []string{"/a"}, JobID: strp("J")}},
		{"--arg=-c is a value", []string{"runnable-run", "--arg=-c", "-a", "echo", "FOO=bar"},
			commandArgs{Kind: "multihost", Config: "{}", Args: []string{"-c", "echo"}, KeyVals: []string{"FOO=bar"}, Category: "test"}},
		{"glued short values", []string{"task-run", "-ix", "-kfoo", "-ab", "-i=y"},
			commandArgs{Kind: "foo", Config: "{}", Args: []string{"b"}, Identifier: "y", Category: "test"}},
		{"unambiguous long prefixes", []string{"task-run", "--ident", "x", "--ar", "a", "--j", "J", "--ur=u", "--k=kk"},
			commandArgs{Kind: "kk", URI: strp("u"), Config: "{}", Args: []string{"a"}, Identifier: "x", Category: "test", JobID: strp("J")}},
		{"negative numbers and spaced words are values", []string{"runnable-run", "-a", "-1", "-a", "-1.5", "-a", "-x y", "-a", "-", "-a", " -c"},
			commandArgs{Kind: "multihost", Config: "{}", Args: []string{"-1", "-1.5", "-x y", "-", " -c"}, Category: "test"}},
		{"last single value wins", []string{"runnable-run", "-u", "u1", "-u", "u2", "--kind", "a", "--kind=b", "--kind="},
			commandArgs{Kind: "", URI: strp("u2"), Config: "{}", Category: "test"}},
		{"KEY=VAL split later; empty key allowed", []string{"runnable-run", "a=b=c", "=v"},
			commandArgs{Kind: "multihost", Config: "{}", KeyVals: []string{"a=b=c", "=v"}, Category: "test"}},
		{"-- ends options", []string{"task-run", "-i", "x", "--", "a=1"},
			commandArgs{Kind: "multihost", Config: "{}", KeyVals: []string{"a=1"}, Identifier: "x", Category: "test"}},
		{"options and KEY=VAL interleaved (argparse refuses c=3)", []string{"task-run", "-i", "x", "a=1", "-s", "s", "c=3"},
			commandArgs{Kind: "multihost", Config: "{}", KeyVals: []string{"a=1", "c=3"}, Identifier: "x", Category: "test", StatusURIs: []string{"s"}}},
		{"runnable-run without args", []string{"runnable-run"},
			commandArgs{Kind: "multihost", Config: "{}", Category: "test"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv, err := parseCommandLine(append([]string{runnerArgv0}, c.argv...))
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if inv.Help != "" {
				t.Fatalf("help requested")
			}
			if !reflect.DeepEqual(inv.Args, c.want) {
				t.Errorf("got  %+v\nwant %+v", inv.Args, c.want)
			}
		})
	}
}

func TestParseCommandLine_usageErrors(t *testing.T) {
	cases := []struct {
		argv0 string
		argv  []string
		prog  string
		msg   string
	}{
		{runnerArgv0, []string{"task-run", "-a", "-c"}, "avocado-runner-multihost task-run", "argument -a/--arg: expected one argument"},
		{runnerArgv0, []string{"task-run", "-i", "x", "-a", "-c x"}, "avocado-runner-multihost task-run", "argument -a/--arg: expected one argument"},
		{runnerArgv0, []string{"task-run", "-i", "x", "-a", "--"}, "avocado-runner-multihost task-run", "argument -a/--arg: expected one argument"},
		{runnerArgv0, []string{"task-run", "-i", "x", "-a", "-1e3"}, "avocado-runner-multihost task-run", "argument -a/--arg: expected one argument"},
		{runnerArgv0, []string{"task-run", "-i"}, "avocado-runner-multihost task-run", "argument -i/--identifier: expected one argument"},
		{runnerArgv0, []string{"task-run", "-i", "x", "-s"}, "avocado-runner-multihost task-run", "argument -s/--status-uri: expected one argument"},
		{runnerArgv0, []string{"task-run"}, "avocado-runner-multihost task-run", "the following arguments are required: -i/--identifier"},
		{runnerArgv0, []string{"task-run", "-k", "multihost", "a=1", "-s", "/x"}, "avocado-runner-multihost task-run", "the following arguments are required: -i/--identifier"},
		{"/bin/vtcluster", []string{"task-run"}, "avocado-runner-multihost task-run", "the following arguments are required: -i/--identifier, -k/--kind"},
		{"/bin/vtcluster", []string{"runnable-run", "-u", "x"}, "avocado-runner-multihost runnable-run", "the following arguments are required: -k/--kind"},
		{runnerArgv0, []string{"runnable-run", "badkwarg"}, "avocado-runner-multihost runnable-run", `argument KEY_VAL: Invalid keyword parameter: "badkwarg". Valid option must be a "KEY=VALUE" like expression`},
		{runnerArgv0, []string{"task-run", "-i", "x", "--", "-s", "y"}, "avocado-runner-multihost task-run", `argument KEY_VAL: Invalid keyword parameter: "-s". Valid option must be a "KEY=VALUE" like expression`},
		{runnerArgv0, []string{"task-run", "-i", "x", "--c", "x"}, "avocado-runner-multihost task-run", "ambiguous option: --c could match --category, --config"},
		{runnerArgv0, []string{"task-run", "-i", "x", "--bogus"}, "avocado-runner-multihost", "unrecognized arguments: --bogus"},
		{runnerArgv0, []string{"capabilities", "extra"}, "avocado-runner-multihost", "unrecognized arguments: extra"},
		{runnerArgv0, []string{"runnable-run-recipe"}, "avocado-runner-multihost runnable-run-recipe", "the following arguments are required: recipe"},
		{runnerArgv0, []string{"task-run-recipe"}, "avocado-runner-multihost task-run-recipe", "the following arguments are required: recipe"},
		{runnerArgv0, []string{"runnable-run-recipe", "a", "b"}, "avocado-runner-multihost", "unrecognized arguments: b"},
		{runnerArgv0, []string{}, "avocado-runner-multihost", "the following arguments are required: subcommand"},
		{runnerArgv0, []string{"bogus"}, "avocado-runner-multihost", "argument subcommand: invalid choice: 'bogus' (choose from 'capabilities', 'runnable-run', 'runnable-run-recipe', 'task-run', 'task-run-recipe')"},
		{runnerArgv0, []string{"task-run", "-i", "x", "-hx"}, "avocado-runner-multihost task-run", "argument -h/--help: ignored explicit argument 'x'"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.argv, " "), func(t *testing.T) {
			_, err := parseCommandLine(append([]string{c.argv0}, c.argv...))
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("want a usage error, got %v", err)
			}
			if ue.Prog != c.prog || ue.Msg != c.msg {
				t.Errorf("got  %s: error: %s\nwant %s: error: %s", ue.Prog, ue.Msg, c.prog, c.msg)
			}
			if !strings.HasPrefix(ue.Error(), "usage: avocado-runner-multihost") {
				t.Errorf("error text does not start with the usage block:\n%s", ue.Error())
			}
		})
	}
}

func TestParseCommandLine_recipe(t *testing.T) {
	inv, err := parseCommandLine([]string{runnerArgv0, "runnable-run-recipe", "--", "-x.json"})
	if err != nil || inv.Recipe != "-x.json" {
		t.Fatalf("got %+v, %v", inv, err)
	}
}

func TestParseCommandLine_help(t *testing.T) {
	for _, argv := range [][]string{{"-h"}, {"--help"}, {"--he"}, {"task-run", "-i", "x", "-h"}, {"task-run", "-h", "-i"}, {"runnable-run-recipe", "x", "-h"}} {
		inv, err := parseCommandLine(append([]string{runnerArgv0}, argv...))
		if err != nil || inv.Help == "" {
			t.Errorf("%v: got %+v, %v; want help", argv, inv, err)
		}
	}
}

// Golden text produced by argparse for the same parser definition (the
// interface selftest only needs "capabilities" in it; the rest keeps the
// runner looking like its Python siblings).
func TestParseCommandLine_helpText(t *testing.T) {
	t.Setenv("COLUMNS", "80")
	inv, err := parseCommandLine([]string{runnerArgv0, "--help"})
	if err != nil {
		t.Fatal(err)
	}
	want := `usage: avocado-runner-multihost [-h]
                                {capabilities,runnable-run,runnable-run-recipe,task-run,task-run-recipe}
                                ...

nrunner application for multihost tests

positional arguments:
  {capabilities,runnable-run,runnable-run-recipe,task-run,task-run-recipe}
    capabilities        Outputs capabilities, including runnables and commands
    runnable-run        Runs a runnable definition from arguments
    runnable-run-recipe
                        Runs a runnable definition from a recipe
    task-run            Runs a task from arguments
    task-run-recipe     Runs a task from a recipe

options:
  -h, --help            show this help message and exit
`
	if inv.Help != want {
		t.Errorf("got\n%s\nwant\n%s", inv.Help, want)
	}
	inv, err = parseCommandLine([]string{runnerArgv0, "runnable-run", "-h"})
	if err != nil {
		t.Fatal(err)
	}
	want = `usage: avocado-runner-multihost runnable-run [-h] [-k KIND] [-u URI]
                                             [-c CONFIG] [-a ARG]
                                             [KEY_VAL ...]

positional arguments:
  KEY_VAL               Keyword (key=val) arguments to runnable

options:
  -h, --help            show this help message and exit
  -k KIND, --kind KIND  Kind of runnable, defaults to "multihost"
  -u URI, --uri URI     URI of runnable
  -c CONFIG, --config CONFIG
                        A config JSON data
  -a ARG, --arg ARG     Simple arguments to runnable
`
	if inv.Help != want {
		t.Errorf("got\n%s\nwant\n%s", inv.Help, want)
	}
}
