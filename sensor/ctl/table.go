package ctl

import (
	"bytes"
	"io"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// table is an aligned table for a terminal: a header in capitals, text
// columns aligned left and number columns aligned right, two spaces
// between columns.
type table struct {
	header []string
	right  []bool // by column: align right
	rows   [][]string
}

// newTable starts a table; a header that starts with ">" is of a column
// aligned right (the ">" is not shown).
func newTable(header ...string) *table {
	t := &table{}
	for _, h := range header {
		name, right := strings.CutPrefix(h, ">")
		t.header = append(t.header, name)
		t.right = append(t.right, right)
	}
	return t
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// write writes the table, each line after indent.
func (t *table) write(w io.Writer, indent string) error {
	all := append([][]string{t.header}, t.rows...)
	width := make([]int, len(t.header))
	for _, r := range all {
		for i, c := range r {
			if i < len(width) {
				width[i] = max(width[i], utf8.RuneCountInString(c))
			}
		}
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	for _, r := range all {
		var line strings.Builder
		line.WriteString(indent)
		for i := range t.header {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			if t.right[i] {
				c = strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)) + c
			}
			line.WriteString(c)
			if i < len(t.header)-1 {
				line.WriteByte('\t')
			}
		}
		line.WriteByte('\n')
		_, _ = tw.Write([]byte(line.String()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Empty cells at the end of a line leave padding behind.
	lines := strings.SplitAfter(buf.String(), "\n")
	var out strings.Builder
	for _, l := range lines {
		if l == "" {
			continue
		}
		out.WriteString(strings.TrimRight(l, " \n"))
		out.WriteByte('\n')
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// fields are key–value lines: the keys aligned, one value per line.
type fields struct {
	rows [][2]string
}

func (f *fields) add(key, value string) { f.rows = append(f.rows, [2]string{key, value}) }

func (f *fields) write(w io.Writer) error {
	width := 0
	for _, r := range f.rows {
		width = max(width, utf8.RuneCountInString(r[0]))
	}
	var b strings.Builder
	for _, r := range f.rows {
		b.WriteString(r[0])
		if r[1] != "" {
			b.WriteString(strings.Repeat(" ", width-utf8.RuneCountInString(r[0])+2))
			b.WriteString(r[1])
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}
