package proxy

import (
	"fmt"
	"strings"
)

// Pos is a position in a configuration file.
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d.%d", p.File, p.Line, p.Col) }

// token is one word or quoted string of a configuration line.
type token struct {
	Text   string
	Quoted bool
	Pos    Pos
}

// line is one directive: a keyword followed by its arguments.
type line struct {
	Toks []token
}

func (l line) pos() Pos { return l.Toks[0].Pos }

// Diag is one problem found in a configuration.
type Diag struct {
	Pos Pos
	Msg string
}

func (d Diag) String() string { return d.Pos.String() + ": " + d.Msg }

// lex splits src into directive lines. Comments start with # outside
// quotes; strings are double-quoted; inside them \\" and \\\\ are
// escapes and any other backslash is kept (regular expressions need it).
func lex(file string, src []byte, diags *[]Diag) []line {
	var out []line
	lineNo := 1
	for _, raw := range strings.Split(string(src), "\n") {
		toks := lexLine(file, lineNo, strings.TrimSuffix(raw, "\r"), diags)
		if len(toks) > 0 {
			out = append(out, line{Toks: toks})
		}
		lineNo++
	}
	return out
}

func lexLine(file string, lineNo int, s string, diags *[]Diag) []token {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\f' || c == '\v':
			i++
		case c == '#':
			return toks
		case c == '"':
			pos := Pos{file, lineNo, i + 1}
			var b strings.Builder
			j := i + 1
			closed := false
			for j < len(s) {
				if s[j] == '\\' && j+1 < len(s) && (s[j+1] == '"' || s[j+1] == '\\') {
					b.WriteByte(s[j+1])
					j += 2
					continue
				}
				if s[j] == '"' {
					closed = true
					j++
					break
				}
				b.WriteByte(s[j])
				j++
			}
			if !closed {
				*diags = append(*diags, Diag{pos, "unterminated quoted string"})
			}
			toks = append(toks, token{Text: b.String(), Quoted: true, Pos: pos})
			i = j
		default:
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '\t' && s[j] != '"' && s[j] != '#' && s[j] != '\f' && s[j] != '\v' {
				j++
			}
			toks = append(toks, token{Text: s[i:j], Pos: Pos{file, lineNo, i + 1}})
			i = j
		}
	}
	return toks
}
