package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// FieldError is one problem with one field. Its text is "file:line: field: reason"; the line is
// left out when the field is not in the file (a default), the file when the Config was not read
// from one, and the field for an error of YAML syntax.
type FieldError struct {
	File   string // name of the file
	Line   int    // 1-based line of the field, 0 if unknown
	Field  string // YAML path of the field: drain.interval, interfaces[1].hook
	Reason string // what is wrong, lower-case
}

func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Reason)
	// One error, one line: a file's text never breaks one.
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(b.String())
}

// Load reads the file at path and returns its configuration, as Parse does.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes a configuration file's content strictly over the defaults, and validates the
// result. name is the file's name in errors. On error the Config is nil and the error joins one
// *FieldError per problem, one per line: every decoding error if the file does not decode, or
// else every validation error.
func Parse(data []byte, name string) (*Config, error) {
	f, err := parseYAML(data)
	if err != nil {
		return nil, syntaxError(name, err)
	}
	var body ast.Node
	for _, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if body != nil {
			return nil, &FieldError{File: name, Line: lineOf(doc.Body), Reason: "a second YAML document (after ---): the configuration is one document"}
		}
		body = doc.Body
	}

	c := defaults()
	c.file, c.lines = name, map[string]int{}
	d := &decoder{file: name, lines: c.lines, anchors: map[string]ast.Node{}}
	if _, null := body.(*ast.NullNode); body != nil && !null {
		d.decode(body, reflect.ValueOf(&c).Elem(), "", 1)
	}
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	c.normalize()
	c.derive()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// derive fills the fields whose default depends on other fields.
func (c *Config) derive() {
	if c.Store.Path == "" {
		c.Store.Path = filepath.Join(c.DataDir, storeFile)
	}
}

// normalize writes values that may be written in several ways in one way: country codes in upper
// case, MAC addresses as 00:11:22:33:44:55.
func (c *Config) normalize() {
	for i := range c.Interfaces {
		if hw, err := net.ParseMAC(c.Interfaces[i].MAC); err == nil && len(hw) == 6 {
			c.Interfaces[i].MAC = hw.String()
		}
	}
	for i := range c.Tables {
		c.Tables[i].Labels.Country = strings.ToUpper(c.Tables[i].Labels.Country)
	}
	for i := range c.WatchLists {
		for j, cc := range c.WatchLists[i].Countries {
			c.WatchLists[i].Countries[j] = strings.ToUpper(cc)
		}
	}
}

// File is the name of the file the configuration was read from; empty for Default.
func (c *Config) File() string { return c.file }

// Line is the line of the field at a YAML path (drain.interval, interfaces[1].hook) in the file
// the configuration was read from, or 0 if the field is not in it.
func (c *Config) Line(path string) int { return c.lines[path] }

// lineNear is the line of the field at path or, when the field is not in the file, of the
// nearest enclosing field that is.
func (c *Config) lineNear(path string) int {
	for path != "" {
		if l, ok := c.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}
