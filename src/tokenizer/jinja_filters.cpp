// jinja2's builtin filters, plus transformers' tojson override.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <unordered_map>

#include "tokenizer/jinja_eval.h"
#include "tokenizer/jinja_strings.h"

namespace jinx::jinja {
namespace {

using FilterFn = Value (*)(Renderer&, const Value&, CallArgs&);

Value generator(std::vector<Value> items) {
  Value v = Value::make_list(std::move(items));
  v.list->is_generator = true;
  return v;
}

bool flag(CallArgs& a, size_t i, const char* name, bool dflt) {
  const Value* v = arg(a, i, name);
  return v ? truthy(*v) : dflt;
}

int64_t length_of(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
      return 0;
    case Kind::kString:
      return static_cast<int64_t>(code_point_count(v.s));
    case Kind::kList:
      if (v.list->is_generator) fail("object of type 'generator' has no len()");
      return static_cast<int64_t>(v.list->items.size());
    case Kind::kDict:
      if (v.dict->is_namespace) break;
      return static_cast<int64_t>(v.dict->items.size());
    case Kind::kLoop:
      return static_cast<int64_t>(v.loop->items->items.size());
    default:
      break;
  }
  fail("object of type '", type_name(v).substr(0, type_name(v).find(' ')), "' has no len()");
}

// jinja2's make_attrgetter: "a.b.0" looks up a, then b, then index 0.
Value get_path(Renderer& r, Value item, const Value& attribute) {
  if (!attribute.is_string()) return r.getitem(item, attribute);
  const std::string& path = attribute.s;
  size_t b = 0;
  while (true) {
    size_t e = path.find('.', b);
    std::string part = path.substr(b, e == std::string::npos ? std::string::npos : e - b);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    item = r.getitem(item, digits ? Value::integer(std::stoll(part)) : Value::string(part));
    if (e == std::string::npos) return item;
    b = e + 1;
  }
}

Value ignore_case(const Value& v) {
  return v.is_string() ? Value::string(py_lower(v.s)) : v;
}

Value f_tojson(Renderer&, const Value& v, CallArgs& a) {
  check_no_extra(a, 4, {"ensure_ascii", "indent", "separators", "sort_keys"}, "tojson");
  JsonOptions o;
  o.ensure_ascii = flag(a, 0, "ensure_ascii", false);
  const Value* indent = arg(a, 1, "indent");
  if (indent && !indent->is_none()) {
    o.has_indent = true;
    if (indent->is_string()) {
      o.indent = indent->s;
    } else if (indent->is_integral()) {
      o.indent =
          std::string(static_cast<size_t>(std::clamp<int64_t>(indent->as_int(), 0, 1000)), ' ');
    } else {
      fail("tojson indent must be an int or a string");
    }
  }
  o.item_separator = o.has_indent ? "," : ", ";
  o.key_separator = ": ";
  const Value* seps = arg(a, 2, "separators");
  if (seps && !seps->is_none()) {
    if (!seps->is_list() || seps->list->items.size() != 2 || !seps->list->items[0].is_string() ||
        !seps->list->items[1].is_string()) {
      fail("tojson separators must be a pair of strings");
    }
    o.item_separator = seps->list->items[0].s;
    o.key_separator = seps->list->items[1].s;
  }
  o.sort_keys = flag(a, 3, "sort_keys", false);
  return Value::string(to_json(v, o));
}

Value f_trim(Renderer&, const Value& v, CallArgs& a) {
  const Value* chars = arg(a, 0, "chars");
  std::optional<std::string> c;
  if (chars && !chars->is_none()) c = to_str(*chars);
  return Value::string(py_strip(to_str(v), c, StripSide::kBoth));
}

Value f_length(Renderer&, const Value& v, CallArgs&) {
  return Value::integer(length_of(v));
}
Value f_lower(Renderer&, const Value& v, CallArgs&) {
  return Value::string(py_lower(to_str(v)));
}
Value f_upper(Renderer&, const Value& v, CallArgs&) {
  return Value::string(py_upper(to_str(v)));
}
Value f_title(Renderer&, const Value& v, CallArgs&) {
  return Value::string(jinja_title(to_str(v)));
}
Value f_capitalize(Renderer&, const Value& v, CallArgs&) {
  return Value::string(py_capitalize(to_str(v)));
}
Value f_string(Renderer&, const Value& v, CallArgs&) {
  return Value::string(to_str(v));
}

Value f_replace(Renderer& r, const Value& v, CallArgs& a) {
  const Value* old = arg(a, 0, "old");
  const Value* repl = arg(a, 1, "new");
  if (!old || !repl) fail("replace filter needs old and new");
  const Value* count = arg(a, 2, "count");
  int64_t n = count && !count->is_none() ? count->as_int() : -1;
  return Value::string(
      py_replace(to_str(v), to_str(*old), to_str(*repl), n, r.limits().max_output_bytes));
}

Value f_join(Renderer& r, const Value& v, CallArgs& a) {
  const Value* sep = arg(a, 0, "d");
  const Value* attribute = arg(a, 1, "attribute");
  std::string s = sep ? to_str(*sep) : "";
  std::string out;
  bool first = true;
  for (const auto& item : r.iterate(v)) {
    if (!first) out += s;
    first = false;
    out += to_str(attribute && !attribute->is_none() ? get_path(r, item, *attribute) : item);
    r.check_size(out.size());
  }
  return Value::string(std::move(out));
}

Value f_default(Renderer&, const Value& v, CallArgs& a) {
  const Value* d = arg(a, 0, "default_value");
  bool boolean = flag(a, 1, "boolean", false);
  if (v.is_undefined() || (boolean && !truthy(v))) return d ? *d : Value::string("");
  return v;
}

Value f_first(Renderer& r, const Value& v, CallArgs&) {
  if (v.is_string() && !v.s.empty()) return r.getitem(v, Value::integer(0));
  std::vector<Value> items = r.iterate(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Renderer& r, const Value& v, CallArgs&) {
  if (v.is_dict() || (v.is_list() && v.list->is_generator)) {
    fail("'", type_name(v), "' object is not reversible");
  }
  std::vector<Value> items = r.iterate(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_list(Renderer& r, const Value& v, CallArgs&) {
  return Value::make_list(r.iterate(v));
}

// Python's int(str): optional sign, digits with '_' between, surrounding whitespace.
bool parse_int(const std::string& text, int base, int64_t& out) {
  std::string t = py_strip(text, std::nullopt, StripSide::kBoth);
  std::string digits;
  for (size_t k = 0; k < t.size(); ++k) {
    if (t[k] == '_' && k > 0 && k + 1 < t.size() &&
        std::isalnum(static_cast<unsigned char>(t[k - 1])))
      continue;
    digits += t[k];
  }
  if (digits.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(digits.c_str(), &end, base);
  if (errno == ERANGE || *end != '\0' || std::isspace(static_cast<unsigned char>(digits[0])))
    return false;
  out = v;
  return true;
}

bool parse_float(const std::string& text, double& out) {
  std::string t = py_strip(text, std::nullopt, StripSide::kBoth);
  if (t.empty()) return false;
  std::string lower = py_lower(t);
  for (const char* bad : {"0x", "-0x", "+0x"}) {
    if (lower.rfind(bad, 0) == 0) return false;
  }
  char* end = nullptr;
  out = std::strtod(t.c_str(), &end);
  return *end == '\0';
}

Value f_int(Renderer&, const Value& v, CallArgs& a) {
  if (v.is_undefined()) fail(v.s.empty() ? "value is undefined" : v.s);
  const Value* d = arg(a, 0, "default");
  Value dflt = d ? *d : Value::integer(0);
  int64_t base = 10;
  if (const Value* b = arg(a, 1, "base")) base = b->as_int();
  if (v.is_string()) {
    int64_t n;
    if (base >= 2 && base <= 36 && parse_int(v.s, static_cast<int>(base), n))
      return Value::integer(n);
    double f;
    if (parse_float(v.s, f) && std::isfinite(f) && std::fabs(f) < 9.2e18) {
      return Value::integer(static_cast<int64_t>(f));
    }
    return dflt;
  }
  if (v.is_integral()) return Value::integer(v.as_int());
  if (v.kind == Kind::kFloat && std::isfinite(v.f) && std::fabs(v.f) < 9.2e18) {
    return Value::integer(static_cast<int64_t>(v.f));
  }
  return dflt;
}

Value f_float(Renderer&, const Value& v, CallArgs& a) {
  if (v.is_undefined()) fail(v.s.empty() ? "value is undefined" : v.s);
  const Value* d = arg(a, 0, "default");
  Value dflt = d ? *d : Value::number(0.0);
  if (v.is_number()) return Value::number(v.as_double());
  double f;
  if (v.is_string() && parse_float(v.s, f)) return Value::number(f);
  return dflt;
}

Value f_abs(Renderer&, const Value& v, CallArgs&) {
  if (v.kind == Kind::kFloat) return Value::number(std::fabs(v.f));
  if (v.is_integral()) {
    if (v.as_int() == INT64_MIN) fail("integer overflow");
    return Value::integer(std::llabs(v.as_int()));
  }
  fail("bad operand type for abs(): '", type_name(v), "'");
}

Value f_round(Renderer&, const Value& v, CallArgs& a) {
  int64_t precision = 0;
  if (const Value* p = arg(a, 0, "precision")) precision = p->as_int();
  const Value* m = arg(a, 1, "method");
  std::string method = m ? to_str(*m) : "common";
  if (!v.is_number()) fail("round filter needs a number");
  if (method == "common") {
    if (v.is_integral()) return Value::integer(v.as_int());
    if (precision < 0 || precision > 300) fail("round precision out of range");
    char buf[512];
    std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(precision), v.f);  // half-even, exact
    return Value::number(std::strtod(buf, nullptr));
  }
  if (method != "ceil" && method != "floor") fail("method must be common, ceil or floor");
  double scale = std::pow(10.0, static_cast<double>(precision));
  double x = v.as_double() * scale;
  return Value::number((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
}

Value f_items(Renderer&, const Value& v, CallArgs&) {
  if (v.is_undefined()) return generator({});
  if (!v.is_dict() || v.dict->is_namespace) fail("Can only get item pairs from a mapping.");
  std::vector<Value> items;
  for (const auto& kv : v.dict->items) {
    items.push_back(Value::make_list({Value::string(kv.first), kv.second}, true));
  }
  return generator(std::move(items));
}

// select / reject / selectattr / rejectattr share this.
Value select_impl(Renderer& r, const Value& v, CallArgs& a, bool by_attr, bool keep_if) {
  size_t next = 0;
  Value attribute;
  if (by_attr) {
    if (a.pos.empty()) fail("selectattr/rejectattr need an attribute");
    attribute = a.pos[next++];
  }
  std::string test;
  if (next < a.pos.size()) test = to_str(a.pos[next++]);
  CallArgs targs;
  targs.pos.assign(a.pos.begin() + static_cast<long>(next), a.pos.end());
  targs.kw = a.kw;
  std::vector<Value> out;
  for (const auto& item : r.iterate(v)) {
    r.charge(1);
    Value x = by_attr ? get_path(r, item, attribute) : item;
    CallArgs call = targs;
    bool ok = test.empty() ? truthy(x) : apply_test(r, test, x, call);
    if (ok == keep_if) out.push_back(item);
  }
  return generator(std::move(out));
}

Value f_select(Renderer& r, const Value& v, CallArgs& a) {
  return select_impl(r, v, a, false, true);
}
Value f_reject(Renderer& r, const Value& v, CallArgs& a) {
  return select_impl(r, v, a, false, false);
}
Value f_selectattr(Renderer& r, const Value& v, CallArgs& a) {
  return select_impl(r, v, a, true, true);
}
Value f_rejectattr(Renderer& r, const Value& v, CallArgs& a) {
  return select_impl(r, v, a, true, false);
}

Value f_map(Renderer& r, const Value& v, CallArgs& a) {
  std::vector<Value> out;
  if (a.pos.empty()) {
    const Value* attribute = arg(a, 99, "attribute");
    if (!attribute) fail("map filter needs a filter name or attribute=");
    const Value* dflt = arg(a, 99, "default");
    for (const auto& item : r.iterate(v)) {
      r.charge(1);
      Value x = get_path(r, item, *attribute);
      out.push_back(x.is_undefined() && dflt ? *dflt : x);
    }
    return generator(std::move(out));
  }
  std::string name = to_str(a.pos[0]);
  CallArgs rest;
  rest.pos.assign(a.pos.begin() + 1, a.pos.end());
  rest.kw = a.kw;
  for (const auto& item : r.iterate(v)) {
    r.charge(1);
    CallArgs call = rest;
    out.push_back(apply_filter(r, name, item, call));
  }
  return generator(std::move(out));
}

Value f_unique(Renderer& r, const Value& v, CallArgs& a) {
  bool case_sensitive = flag(a, 0, "case_sensitive", false);
  const Value* attribute = arg(a, 1, "attribute");
  std::vector<Value> seen;
  std::vector<Value> out;
  for (const auto& item : r.iterate(v)) {
    r.charge(static_cast<int64_t>(seen.size()) / 64 + 1);
    Value key = attribute && !attribute->is_none() ? get_path(r, item, *attribute) : item;
    if (!case_sensitive) key = ignore_case(key);
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) {
      seen.push_back(key);
      out.push_back(item);
    }
  }
  return generator(std::move(out));
}

Value f_reverse(Renderer& r, const Value& v, CallArgs&) {
  if (v.is_string()) {
    std::vector<uint32_t> cps = to_code_points(v.s);
    std::reverse(cps.begin(), cps.end());
    return Value::string(from_code_points(cps, 0, cps.size()));
  }
  std::vector<Value> items = r.iterate(v);
  std::reverse(items.begin(), items.end());
  return generator(std::move(items));
}

Value f_sort(Renderer& r, const Value& v, CallArgs& a) {
  bool reverse = flag(a, 0, "reverse", false);
  bool case_sensitive = flag(a, 1, "case_sensitive", false);
  const Value* attribute = arg(a, 2, "attribute");
  std::vector<Value> items = r.iterate(v);
  std::vector<std::pair<std::vector<Value>, size_t>> keyed;
  for (size_t k = 0; k < items.size(); ++k) {
    std::vector<Value> key;
    if (attribute && attribute->is_string()) {
      for (const auto& part : py_split(attribute->s, std::string(","), -1, false)) {
        key.push_back(get_path(r, items[k], Value::string(part)));
      }
    } else {
      key.push_back(attribute && !attribute->is_none() ? get_path(r, items[k], *attribute)
                                                       : items[k]);
    }
    if (!case_sensitive) {
      for (auto& x : key) x = ignore_case(x);
    }
    keyed.emplace_back(std::move(key), k);
  }
  r.charge(static_cast<int64_t>(items.size()));
  auto key_less = [](const std::vector<Value>& x, const std::vector<Value>& y) {
    return less(Value::make_list(x), Value::make_list(y));
  };
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? key_less(y.first, x.first) : key_less(x.first, y.first);
  });
  std::vector<Value> out;
  for (const auto& kv : keyed) out.push_back(items[kv.second]);
  return Value::make_list(std::move(out));
}

Value f_dictsort(Renderer& r, const Value& v, CallArgs& a) {
  bool case_sensitive = flag(a, 0, "case_sensitive", false);
  const Value* by = arg(a, 1, "by");
  bool by_value = by && to_str(*by) == "value";
  if (by && !by_value && to_str(*by) != "key")
    fail("You can only sort by either \"key\" or \"value\"");
  bool reverse = flag(a, 2, "reverse", false);
  Value items = f_items(r, v, a);
  std::vector<Value> list = items.list->items;
  std::stable_sort(list.begin(), list.end(), [&](const Value& x, const Value& y) {
    Value kx = x.list->items[by_value ? 1 : 0];
    Value ky = y.list->items[by_value ? 1 : 0];
    if (!case_sensitive) {
      kx = ignore_case(kx);
      ky = ignore_case(ky);
    }
    return reverse ? less(ky, kx) : less(kx, ky);
  });
  return Value::make_list(std::move(list));
}

Value f_indent(Renderer&, const Value& v, CallArgs& a) {
  const Value* width = arg(a, 0, "width");
  std::string ind = "    ";
  if (width) {
    ind =
        width->is_string()
            ? width->s
            : std::string(static_cast<size_t>(std::clamp<int64_t>(width->as_int(), 0, 1000)), ' ');
  }
  bool first = flag(a, 1, "first", false);
  bool blank = flag(a, 2, "blank", false);
  std::vector<std::string> lines = py_splitlines(to_str(v) + "\n", false);
  std::string out;
  for (size_t k = 0; k < lines.size(); ++k) {
    if (k > 0) out += "\n";
    if (k > 0 && (blank || !lines[k].empty())) out += ind;
    out += lines[k];
  }
  if (first) out = ind + out;
  return Value::string(std::move(out));
}

Value f_safe(Renderer&, const Value& v, CallArgs&) {
  return Value::string(to_str(v));
}

Value f_escape(Renderer&, const Value& v, CallArgs&) {
  std::string out;
  for (char c : to_str(v)) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return Value::string(std::move(out));
}

Value f_batch(Renderer& r, const Value& v, CallArgs& a) {
  const Value* n = arg(a, 0, "linecount");
  if (!n || !n->is_integral() || n->as_int() <= 0) fail("batch needs a positive line count");
  const Value* fill = arg(a, 1, "fill_with");
  size_t size = static_cast<size_t>(n->as_int());
  std::vector<Value> out;
  std::vector<Value> cur;
  for (const auto& item : r.iterate(v)) {
    cur.push_back(item);
    if (cur.size() == size) {
      out.push_back(Value::make_list(std::move(cur)));
      cur.clear();
    }
  }
  if (!cur.empty()) {
    if (fill && !fill->is_none()) {
      while (cur.size() < size) cur.push_back(*fill);
    }
    out.push_back(Value::make_list(std::move(cur)));
  }
  return generator(std::move(out));
}

Value f_sum(Renderer& r, const Value& v, CallArgs& a) {
  const Value* attribute = arg(a, 0, "attribute");
  const Value* start = arg(a, 1, "start");
  Value total = start ? *start : Value::integer(0);
  for (const auto& item : r.iterate(v)) {
    Value x = attribute && !attribute->is_none() ? get_path(r, item, *attribute) : item;
    total = binary_op("+", total, x, r.limits().max_output_bytes);
  }
  return total;
}

Value min_max(Renderer& r, const Value& v, CallArgs& a, bool want_max) {
  bool case_sensitive = flag(a, 0, "case_sensitive", false);
  const Value* attribute = arg(a, 1, "attribute");
  std::vector<Value> items = r.iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  auto key = [&](const Value& x) {
    Value k = attribute && !attribute->is_none() ? get_path(r, x, *attribute) : x;
    return case_sensitive ? k : ignore_case(k);
  };
  size_t best = 0;
  for (size_t k = 1; k < items.size(); ++k) {
    if (want_max ? less(key(items[best]), key(items[k])) : less(key(items[k]), key(items[best])))
      best = k;
  }
  return items[best];
}

Value f_min(Renderer& r, const Value& v, CallArgs& a) {
  return min_max(r, v, a, false);
}
Value f_max(Renderer& r, const Value& v, CallArgs& a) {
  return min_max(r, v, a, true);
}

Value f_wordcount(Renderer&, const Value& v, CallArgs&) {
  int64_t n = 0;
  bool in_word = false;
  for (uint32_t c : to_code_points(to_str(v))) {
    bool w = c == '_' || (c >= '0' && c <= '9') || py_is_lower(c) || py_is_upper(c) || c > 0x2E80;
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::integer(n);
}

Value f_center(Renderer&, const Value& v, CallArgs& a) {
  std::string s = to_str(v);
  int64_t width = 80;
  if (const Value* w = arg(a, 0, "width")) width = std::min<int64_t>(w->as_int(), 100000);
  int64_t len = static_cast<int64_t>(code_point_count(s));
  if (width <= len) return Value::string(s);
  int64_t marg = width - len;
  int64_t left = marg / 2 + (marg & width & 1);
  return Value::string(std::string(left, ' ') + s + std::string(marg - left, ' '));
}

Value f_format(Renderer& r, const Value& v, CallArgs& a) {
  if (!a.pos.empty() && !a.kw.empty())
    fail("can't handle positional and keyword arguments at the same time");
  Value args = a.pos.size() == 1 ? a.pos[0] : Value::make_list(a.pos, true);
  if (a.pos.size() == 1 && a.pos[0].is_list() && a.pos[0].list->is_tuple) {
    args = Value::make_list({a.pos[0]}, true);
  }
  return binary_op("%", Value::string(to_str(v)), args, r.limits().max_output_bytes);
}

// Python attributes only: unlike `x.name`, never falls back to dict keys.
Value f_attr(Renderer& r, const Value& v, CallArgs& a) {
  const Value* name = arg(a, 0, "name");
  if (!name) fail("attr filter needs a name");
  std::string n = to_str(*name);
  if (v.is_undefined()) return Value::undefined("'" + n + "' is undefined");
  if (has_method(v, n) || v.kind == Kind::kLoop || (v.is_dict() && v.dict->is_namespace)) {
    return r.getattr(v, n);
  }
  return Value::undefined("'" + type_name(v) + "' has no attribute '" + n + "'");
}

Value f_truncate(Renderer&, const Value& v, CallArgs& a) {
  std::vector<uint32_t> s = to_code_points(to_str(v));
  int64_t length = 255;
  if (const Value* l = arg(a, 0, "length")) length = l->as_int();
  bool killwords = flag(a, 1, "killwords", false);
  const Value* e = arg(a, 2, "end");
  std::string end = e ? to_str(*e) : "...";
  int64_t leeway = 5;
  if (const Value* l = arg(a, 3, "leeway"); l && !l->is_none()) leeway = l->as_int();
  int64_t end_len = static_cast<int64_t>(code_point_count(end));
  if (length < end_len || leeway < 0) fail("truncate: bad length or leeway");
  int64_t n = static_cast<int64_t>(s.size());
  if (n <= length + leeway) return Value::string(from_code_points(s, 0, s.size()));
  std::string head = from_code_points(s, 0, static_cast<size_t>(length - end_len));
  if (killwords) return Value::string(head + end);
  size_t sp = head.rfind(' ');
  return Value::string((sp == std::string::npos ? head : head.substr(0, sp)) + end);
}

Value f_pprint(Renderer&, const Value& v, CallArgs&) {
  return Value::string(repr(v));
}

const std::unordered_map<std::string, FilterFn>& filters() {
  static const std::unordered_map<std::string, FilterFn> kFilters = {{"tojson", f_tojson},
                                                                     {"trim", f_trim},
                                                                     {"length", f_length},
                                                                     {"count", f_length},
                                                                     {"lower", f_lower},
                                                                     {"upper", f_upper},
                                                                     {"title", f_title},
                                                                     {"capitalize", f_capitalize},
                                                                     {"replace", f_replace},
                                                                     {"join", f_join},
                                                                     {"default", f_default},
                                                                     {"d", f_default},
                                                                     {"first", f_first},
                                                                     {"last", f_last},
                                                                     {"list", f_list},
                                                                     {"string", f_string},
                                                                     {"int", f_int},
                                                                     {"float", f_float},
                                                                     {"abs", f_abs},
                                                                     {"round", f_round},
                                                                     {"items", f_items},
                                                                     {"select", f_select},
                                                                     {"reject", f_reject},
                                                                     {"selectattr", f_selectattr},
                                                                     {"rejectattr", f_rejectattr},
                                                                     {"map", f_map},
                                                                     {"unique", f_unique},
                                                                     {"reverse", f_reverse},
                                                                     {"sort", f_sort},
                                                                     {"dictsort", f_dictsort},
                                                                     {"indent", f_indent},
                                                                     {"safe", f_safe},
                                                                     {"escape", f_escape},
                                                                     {"e", f_escape},
                                                                     {"forceescape", f_escape},
                                                                     {"batch", f_batch},
                                                                     {"sum", f_sum},
                                                                     {"min", f_min},
                                                                     {"max", f_max},
                                                                     {"wordcount", f_wordcount},
                                                                     {"center", f_center},
                                                                     {"format", f_format},
                                                                     {"attr", f_attr},
                                                                     {"truncate", f_truncate},
                                                                     {"pprint", f_pprint}};
  return kFilters;
}

}  // namespace

bool is_known_filter(const std::string& name) {
  return filters().count(name) > 0;
}

Value apply_filter(Renderer& r, const std::string& name, const Value& v, CallArgs& args) {
  auto it = filters().find(name);
  if (it == filters().end()) fail("No filter named '", name, "'.");
  return it->second(r, v, args);
}

}  // namespace jinx::jinja
