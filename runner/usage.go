package runner

import (
	"fmt"
	"strings"
)

// Usage and help text laid out like Python 3.11's argparse.HelpFormatter,
// so that the runner reads like every other avocado-runner-* program.

func (o *optSpec) usagePart() string {
	if o.isHelp {
		return "[-h]"
	}
	s := o.short + " " + o.metavar
	if o.required {
		return s
	}
	return "[" + s + "]"
}

func (o *optSpec) invocation() string {
	if o.isHelp {
		return "-h, --help"
	}
	return fmt.Sprintf("%s %s, %s %s", o.short, o.metavar, o.long, o.metavar)
}

func (ps *posSpec) usagePart() string {
	if ps.many {
		return "[" + ps.metavar + " ...]"
	}
	return ps.metavar
}

func (p *parser) choices() string {
	names := make([]string, len(p.cmds))
	for i, c := range p.cmds {
		names[i] = c.name
	}
	return "{" + strings.Join(names, ",") + "}"
}

// usage wraps "usage: prog opts... positionals..." like argparse: one line
// when it fits, otherwise options and positionals on separate groups of
// lines aligned after the program name.
func (p *parser) usage(prog string, optParts, posParts []string) string {
	const prefix = "usage: "
	all := strings.Join(append(append([]string{prog}, optParts...), posParts...), " ")
	if len(prefix)+len(all) <= p.width {
		return prefix + all
	}
	indent := strings.Repeat(" ", len(prefix)+len(prog)+1)
	lines := p.wrapParts(append([]string{prog}, optParts...), indent, prefix)
	if len(posParts) > 0 {
		lines = append(lines, p.wrapParts(posParts, indent, "")...)
	}
	return prefix + strings.Join(lines, "\n")
}

func (p *parser) wrapParts(parts []string, indent, prefix string) []string {
	var lines []string
	var line []string
	lineLen := len(indent) - 1
	if prefix != "" {
		lineLen = len(prefix) - 1
	}
	for _, part := range parts {
		if lineLen+1+len(part) > p.width && len(line) > 0 {
			lines = append(lines, indent+strings.Join(line, " "))
			line = nil
			lineLen = len(indent) - 1
		}
		line = append(line, part)
		lineLen += len(part) + 1
	}
	if len(line) > 0 {
		lines = append(lines, indent+strings.Join(line, " "))
	}
	if prefix != "" && len(lines) > 0 {
		lines[0] = lines[0][len(indent):]
	}
	return lines
}

func (p *parser) topUsage() string {
	return p.usage(p.prog, []string{"[-h]"}, []string{p.choices(), "..."})
}

func (p *parser) subUsage(c *cmdSpec) string {
	var opts, pos []string
	for _, o := range c.opts {
		opts = append(opts, o.usagePart())
	}
	if c.pos != nil {
		pos = append(pos, c.pos.usagePart())
	}
	return p.usage(p.prog+" "+c.name, opts, pos)
}

// helpItem is one line (or block) of the options/positionals sections.
type helpItem struct {
	indent int
	header string
	help   string
}

type helpSection struct {
	title string
	items []helpItem
}

func (p *parser) formatSections(sections []helpSection) string {
	maxLen := 0
	for _, s := range sections {
		for _, it := range s.items {
			maxLen = max(maxLen, len(it.header)+it.indent)
		}
	}
	helpPos := min(maxLen+2, 24)
	helpWidth := max(p.width-helpPos, 11)
	var b strings.Builder
	for _, s := range sections {
		b.WriteString("\n" + s.title + ":\n")
		for _, it := range s.items {
			actionWidth := helpPos - it.indent - 2
			pad := strings.Repeat(" ", it.indent)
			lines := wrapWords(it.help, helpWidth)
			switch {
			case len(lines) == 0:
				b.WriteString(pad + it.header + "\n")
				continue
			case len(it.header) <= actionWidth:
				fmt.Fprintf(&b, "%s%-*s  %s\n", pad, actionWidth, it.header, lines[0])
			default:
				fmt.Fprintf(&b, "%s%s\n%s%s\n", pad, it.header, strings.Repeat(" ", helpPos), lines[0])
			}
			for _, l := range lines[1:] {
				b.WriteString(strings.Repeat(" ", helpPos) + l + "\n")
			}
		}
	}
	return b.String()
}

func wrapWords(text string, width int) []string {
	var lines []string
	var line string
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

func (p *parser) topHelp() string {
	items := []helpItem{{indent: 2, header: p.choices()}}
	for _, c := range p.cmds {
		items = append(items, helpItem{indent: 4, header: c.name, help: c.help})
	}
	return p.topUsage() + "\n\nnrunner application for multihost tests\n" + p.formatSections([]helpSection{
		{"positional arguments", items},
		{"options", []helpItem{{indent: 2, header: "-h, --help", help: "show this help message and exit"}}},
	})
}

func (p *parser) subHelp(c *cmdSpec) string {
	var sections []helpSection
	if c.pos != nil {
		sections = append(sections, helpSection{"positional arguments", []helpItem{{indent: 2, header: c.pos.metavar, help: c.pos.help}}})
	}
	var opts []helpItem
	for _, o := range c.opts {
		opts = append(opts, helpItem{indent: 2, header: o.invocation(), help: o.help})
	}
	sections = append(sections, helpSection{"options", opts})
	return p.subUsage(c) + "\n" + p.formatSections(sections)
}
