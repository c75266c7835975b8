package runner

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Placeholders in step argv: {tag.field} is replaced inside the argv
// element it appears in, so "--peer={dst.address}" works and the result
// is still exactly one argument; no shell ever sees it. "{{" and "}}" are
// literal braces. Any other brace is literal too, so JSON or awk programs
// pass through unless they happen to contain {word.word}.

type argPart struct {
	lit        string
	tag, field string // set for a placeholder
}

func isTagChar(c byte) bool {
	return c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isFieldChar(c byte) bool { return c != '-' && isTagChar(c) }

// parsePlaceholders splits s into literal text and placeholders; a
// placeholder whose tag knownTag rejects is an error.
func parsePlaceholders(s string, knownTag func(string) bool) ([]argPart, error) {
	var parts []argPart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, argPart{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "{{"):
			lit.WriteByte('{')
			i += 2
			continue
		case strings.HasPrefix(s[i:], "}}"):
			lit.WriteByte('}')
			i += 2
			continue
		case s[i] == '{':
			j := i + 1
			for j < len(s) && isTagChar(s[j]) {
				j++
			}
			if j > i+1 && j < len(s) && s[j] == '.' {
				k := j + 1
				for k < len(s) && isFieldChar(s[k]) {
					k++
				}
				if k > j+1 && k < len(s) && s[k] == '}' {
					tag, field := s[i+1:j], s[j+1:k]
					if !knownTag(tag) {
						return nil, fmt.Errorf("placeholder %s names unknown node tag %q (write {{ for a literal brace)", s[i:k+1], tag)
					}
					flush()
					parts = append(parts, argPart{tag: tag, field: field})
					i = k + 1
					continue
				}
			}
		}
		lit.WriteByte(s[i])
		i++
	}
	flush()
	return parts, nil
}

// expandArgv substitutes the placeholders of every element of argv with
// the partition's node facts.
func expandArgv(argv []string, p *Partition) ([]string, error) {
	return expandArgvWith(argv, p, nil)
}

// extraNames resolves placeholders whose name is not a node tag: a VM's
// {VM.address} (vms.go), a message's {sync.KEY} (sync_stage.go). A node
// tag always wins over an extra name of the same spelling.
type extraNames struct {
	has   func(name string) bool
	value func(name, field string) (string, error)
}

// expandArgvWith is expandArgv that also replaces the extra names'
// placeholders (none when extra is nil).
func expandArgvWith(argv []string, p *Partition, extra *extraNames) ([]string, error) {
	out := make([]string, len(argv))
	isExtra := func(name string) bool {
		_, node := p.Node(name)
		return extra != nil && !node && extra.has(name)
	}
	known := func(name string) bool { _, ok := p.Node(name); return ok || isExtra(name) }
	for i, a := range argv {
		parts, err := parsePlaceholders(a, known)
		if err != nil {
			return nil, err
		}
		var b strings.Builder
		for _, part := range parts {
			if part.tag == "" {
				b.WriteString(part.lit)
				continue
			}
			if isExtra(part.tag) {
				v, err := extra.value(part.tag, part.field)
				if err != nil {
					return nil, fmt.Errorf("placeholder {%s.%s}: %w", part.tag, part.field, err)
				}
				b.WriteString(v)
				continue
			}
			n, _ := p.Node(part.tag)
			v, err := n.field(part.field)
			if err != nil {
				return nil, err
			}
			b.WriteString(v)
		}
		out[i] = b.String()
	}
	return out, nil
}

// field returns the text of a placeholder field: address, name,
// resource_<name> (a declared resource on this node: a volume's path, a tap
// port's interface name) or a node property (hostname is one). Strings are
// used as they are, other values as JSON (true, 4, 15.5).
func (n PartitionNode) field(name string) (string, error) {
	if r, ok := strings.CutPrefix(name, "resource_"); ok {
		v, ok := n.Resources[r]
		if !ok {
			return "", fmt.Errorf("runner: placeholder {%s.%s}: the test declares no resource %q on %s", n.Tag, name, r, n.Tag)
		}
		return v, nil
	}
	switch name {
	case "address":
		return n.Address, nil
	case "name":
		return n.Name, nil
	case "agent_url":
		// Command lines are readable by every user of the host (ps), and the
		// URL carries the proxy's secret.
		return "", fmt.Errorf("runner: placeholder {%s.agent_url}: the agent URL carries this test's secret and must not appear in a command line: read $VTCLUSTER_NODE_%s_URL or partition.json instead", n.Tag, envTag(n.Tag))
	}
	v, ok := n.Properties[name]
	if !ok {
		return "", fmt.Errorf("runner: placeholder {%s.%s}: node %q has no property %q", n.Tag, name, n.Name, name)
	}
	if s, ok := v.(string); ok {
		return s, nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("runner: placeholder {%s.%s}: %w", n.Tag, name, err)
	}
	return string(data), nil
}
