package config

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// The file is parsed into goccy/go-yaml's syntax tree and the tree is walked here, against the
// Config struct, rather than handed to the library's decoder: the walk reports every bad field at
// once, in the words of this package (field path, line, what was wrong), and records the line of
// every field so that Validate can name it too.

// maxDepth bounds the walk through aliases; the struct itself is five levels deep.
const maxDepth = 64

// decoder walks one YAML document into a Config.
type decoder struct {
	file    string
	lines   map[string]int      // YAML path -> line, filled as fields are met
	anchors map[string]ast.Node // anchors met so far, for aliases
	errs    []error
	depth   int
}

func (d *decoder) fail(line int, path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.file, Line: line, Field: path, Reason: fmt.Sprintf(format, args...)})
}

// parseYAML parses data into a syntax tree. The parser is third-party code fed with an
// operator's file: a panic in it is turned into an error rather than taking sensord down with a
// stack trace.
func parseYAML(data []byte) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("yaml parser failed: %v", r)
		}
	}()
	return parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
}

// syntaxError turns a parser error into a FieldError with the line it points at.
func syntaxError(file string, err error) error {
	fe := &FieldError{File: file, Reason: "syntax error: " + oneLine(err.Error())}
	var ye yaml.Error
	if errors.As(err, &ye) {
		fe.Reason = "syntax error: " + oneLine(ye.GetMessage())
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			fe.Line = tk.Position.Line
		}
	}
	if strings.Contains(fe.Reason, `'\t'`) {
		fe.Reason += " (indent with spaces: YAML does not allow tabs)"
	}
	return fe
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\t", `\t`)
	s = strings.ReplaceAll(s, "\r", `\r`)
	return strings.ReplaceAll(s, "\n", " ")
}

// lineOf is the line a node starts on, 0 if unknown.
func lineOf(n ast.Node) int {
	if n == nil {
		return 0
	}
	if m, ok := n.(*ast.MappingNode); ok && len(m.Values) > 0 {
		n = m.Values[0].Key
	}
	if m, ok := n.(*ast.MappingValueNode); ok && m.Key != nil {
		n = m.Key
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return 0
	}
	return tk.Position.Line
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
	textType     = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// defaulter is a list element with defaults of its own (an interface's hook).
type defaulter interface{ setDefaults() }

// decode sets v from n. path names v in errors; line is where v's key or list entry is.
func (d *decoder) decode(n ast.Node, v reflect.Value, path string, line int) {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		d.fail(line, path, "nested too deeply")
		return
	}
	switch t := n.(type) {
	case nil:
		return
	case *ast.TagNode:
		// Tags (!!str) are ignored: the field's type says how to read the value.
		d.decode(t.Value, v, path, line)
		return
	case *ast.AnchorNode:
		d.decode(t.Value, v, path, line)
		if t.Name != nil {
			d.anchors[t.Name.GetToken().Value] = t.Value
		}
		return
	case *ast.AliasNode:
		name := ""
		if t.Value != nil {
			name = t.Value.GetToken().Value
		}
		target, ok := d.anchors[name]
		if !ok {
			d.fail(line, path, "alias *%s names no anchor before it", plain(name))
			return
		}
		d.decode(target, v, path, line)
		return
	case *ast.NullNode:
		// No value: keep the default, unless that is a list the operator may have meant to
		// empty (tables), where both readings are plausible.
		if v.Kind() == reflect.Slice && v.Len() > 0 {
			d.fail(line, path, "no value: write [] for none, or leave the key out for the default")
		}
		return
	}

	typ := v.Type()
	switch {
	case typ == durationType:
		d.duration(n, v, path, line)
		return
	case reflect.PointerTo(typ).Implements(textType):
		d.text(n, v, path, line)
		return
	}
	switch typ.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path, line)
	case reflect.Slice:
		d.list(n, v, path, line)
	case reflect.String:
		if s, ok := scalarOf(n); ok {
			v.SetString(s.text)
		} else {
			d.fail(line, path, "%s is not a string", describe(n))
		}
	case reflect.Bool:
		if b, ok := n.(*ast.BoolNode); ok {
			v.SetBool(b.Value)
		} else {
			d.fail(line, path, "%s is not true or false", describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		d.integer(n, v, path, line)
	case reflect.Float32, reflect.Float64:
		d.float(n, v, path, line)
	default:
		panic(fmt.Sprintf("config: no decoding for %s (%s)", typ, path)) // a bug in this package
	}
}

// mapping decodes a YAML mapping into the struct v.
func (d *decoder) mapping(n ast.Node, v reflect.Value, path string, line int) {
	m, ok := n.(ast.MapNode)
	if !ok {
		if path == "" {
			d.fail(lineOf(n), "", "the file holds %s, not a mapping of fields (sensor:, interfaces:, …)", describe(n))
		} else {
			d.fail(line, path, "%s is not a mapping of fields", describe(n))
		}
		return
	}
	fields, names := structFields(v.Type())
	seen := map[string]int{}
	for it := m.MapRange(); it.Next(); {
		kv := it.KeyValue()
		kline := lineOf(kv.Key)
		if kv.Key != nil && kv.Key.IsMergeKey() {
			d.fail(kline, path, "merge keys (<<) are not supported: write the fields out")
			continue
		}
		name, ok := keyName(kv.Key)
		if !ok {
			d.fail(kline, path, "%s is not a field name", describe(kv.Key))
			continue
		}
		fp := plain(name)
		if path != "" {
			fp = path + "." + fp
		}
		if first, dup := seen[name]; dup {
			d.fail(kline, fp, "set twice (first on line %d)", first)
			continue
		}
		seen[name] = kline
		i, ok := fields[name]
		if !ok {
			d.fail(kline, fp, "unknown field (%s)", suggest(name, names))
			continue
		}
		d.lines[fp] = kline
		d.decode(kv.Value, v.Field(i), fp, kline)
	}
}

// list decodes a YAML sequence into the slice v. An empty sequence gives an empty, non-nil slice.
func (d *decoder) list(n ast.Node, v reflect.Value, path string, line int) {
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.fail(line, path, "%s is not a list", describe(n))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
	for i, item := range seq.Values {
		ip := fmt.Sprintf("%s[%d]", path, i)
		il := lineOf(item)
		if il == 0 {
			il = line
		}
		d.lines[ip] = il
		elem := out.Index(i)
		if def, ok := elem.Addr().Interface().(defaulter); ok {
			def.setDefaults()
		}
		if _, null := item.(*ast.NullNode); null {
			d.fail(il, ip, "empty entry")
			continue
		}
		d.decode(item, elem, ip, il)
	}
	v.Set(out)
}

func (d *decoder) duration(n ast.Node, v reflect.Value, path string, line int) {
	switch t := n.(type) {
	case *ast.StringNode:
		dur, err := time.ParseDuration(t.Value)
		if err != nil {
			d.fail(line, path, "%s is not a duration", describe(n))
			return
		}
		v.SetInt(int64(dur))
	case *ast.IntegerNode:
		if s, _ := scalarOf(n); s.text == "0" {
			v.SetInt(0)
			return
		}
		d.fail(line, path, "%s is not a duration (a number needs a unit, e.g. %[1]ss)", describe(n))
	default:
		d.fail(line, path, "%s is not a duration", describe(n))
	}
}

func (d *decoder) text(n ast.Node, v reflect.Value, path string, line int) {
	s, ok := scalarOf(n)
	if !ok {
		noun := "a value of this field"
		if v.Type() == byteSizeType {
			noun = "a size"
		}
		d.fail(line, path, "%s is not %s", describe(n), noun)
		return
	}
	if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s.text)); err != nil {
		d.fail(line, path, "%s", err)
	}
}

// integer decodes an integer, or a string of decimal digits, into any integer kind.
func (d *decoder) integer(n ast.Node, v reflect.Value, path string, line int) {
	var (
		neg bool
		abs uint64
	)
	switch t := n.(type) {
	case *ast.IntegerNode:
		switch x := t.Value.(type) {
		case int64:
			neg, abs = x < 0, uint64(x)
			if neg {
				abs = -abs
			}
		case uint64:
			abs = x
		default:
			d.fail(line, path, "%s is not a whole number", describe(n))
			return
		}
	case *ast.StringNode:
		s := strings.TrimSpace(t.Value)
		digits := strings.TrimPrefix(s, "-")
		u, err := strconv.ParseUint(digits, 10, 64)
		if err != nil {
			if len(s) > 2 && strings.EqualFold(s[:2], "as") {
				if _, err := strconv.ParseUint(s[2:], 10, 32); err == nil {
					d.fail(line, path, "%s is not a whole number (write %s)", describe(n), s[2:])
					return
				}
			}
			d.fail(line, path, "%s is not a whole number", describe(n))
			return
		}
		neg, abs = digits != s && u != 0, u
	default:
		d.fail(line, path, "%s is not a whole number", describe(n))
		return
	}
	bits := v.Type().Bits()
	if v.CanUint() {
		limit := uint64(math.MaxUint64) >> (64 - bits)
		if neg || abs > limit {
			d.fail(line, path, "%s is out of range (0 to %d)", describe(n), limit)
			return
		}
		v.SetUint(abs)
		return
	}
	limit := uint64(1)<<(bits-1) - 1
	if !neg && abs > limit || neg && abs > limit+1 {
		d.fail(line, path, "%s is out of range (%d to %d)", describe(n), -int64(limit)-1, limit)
		return
	}
	if neg {
		v.SetInt(int64(-abs))
	} else {
		v.SetInt(int64(abs))
	}
}

// float decodes a finite number.
func (d *decoder) float(n ast.Node, v reflect.Value, path string, line int) {
	var f float64
	switch t := n.(type) {
	case *ast.IntegerNode:
		switch x := t.Value.(type) {
		case int64:
			f = float64(x)
		case uint64:
			f = float64(x)
		}
	case *ast.FloatNode:
		f = t.Value
	case *ast.StringNode:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(t.Value), 64); err != nil {
			d.fail(line, path, "%s is not a number", describe(n))
			return
		}
	case *ast.InfinityNode, *ast.NanNode:
		d.fail(line, path, "%s is not a finite number", describe(n))
		return
	default:
		d.fail(line, path, "%s is not a number", describe(n))
		return
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		d.fail(line, path, "%s is not a finite number", describe(n))
		return
	}
	v.SetFloat(f)
}

// scalar is a single value as written.
type scalar struct {
	text   string // the value: unquoted string, or the literal text of a number or boolean
	quoted bool   // text is shown in quotes in errors
}

func scalarOf(n ast.Node) (scalar, bool) {
	switch t := n.(type) {
	case *ast.StringNode:
		return scalar{text: t.Value, quoted: true}, true
	case *ast.LiteralNode:
		if t.Value == nil {
			return scalar{quoted: true}, true
		}
		return scalar{text: t.Value.Value, quoted: true}, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return scalar{text: n.GetToken().Value}, true
	}
	return scalar{}, false
}

// plain returns s as it is if it is printable and has no spaces, or else quoted.
func plain(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) || unicode.IsSpace(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}

// describe names a value for an error: "5x" in quotes, 10 and true as written, or its kind.
func describe(n ast.Node) string {
	if s, ok := scalarOf(n); ok {
		text := s.text
		if r := []rune(text); len(r) > 40 {
			text = string(r[:40]) + "…"
		}
		if s.quoted {
			return strconv.Quote(text)
		}
		return text
	}
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.NullNode:
		return "no value"
	case *ast.AliasNode:
		return "an alias"
	case *ast.AnchorNode, *ast.TagNode:
		return "a tagged value"
	}
	return "this value"
}

// keyName is the text of a plain mapping key.
func keyName(k ast.MapKeyNode) (string, bool) {
	switch t := k.(type) {
	case *ast.StringNode:
		return t.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		return t.GetToken().Value, true
	}
	return "", false
}

// structFields maps the YAML keys of a struct type to field indexes, and lists the keys in order.
func structFields(t reflect.Type) (map[string]int, []string) {
	fields := map[string]int{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		fields[name] = i
		names = append(names, name)
	}
	return fields, names
}

// suggest says what an unknown field may have meant, or lists the fields there are.
func suggest(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		dist := editDistance(strings.ToLower(name), k)
		if dist < bestDist && 2*dist < len(name) {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		return "did you mean " + best + "?"
	}
	return "want " + oneOf(known)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// oneOf lists choices as "a, b, c or d".
func oneOf[S ~string](choices []S) string {
	s := make([]string, len(choices))
	for i, c := range choices {
		s[i] = string(c)
	}
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
