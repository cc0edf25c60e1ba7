// Methods of str / dict / list values, globals, and Python's arithmetic operators.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <set>

#include "tokenizer/jinja_eval.h"
#include "tokenizer/jinja_strings.h"

namespace jinx::jinja {
namespace {

Value make_fn(std::string name, std::function<Value(Renderer&, CallArgs&)> f) {
  Value v;
  v.kind = Kind::kFunction;
  v.fn = std::make_shared<Function>();
  v.fn->name = std::move(name);
  v.fn->call = std::move(f);
  return v;
}

std::optional<std::string> opt_str(CallArgs& a, size_t i, const char* name) {
  const Value* v = arg(a, i, name);
  if (!v || v->is_none()) return std::nullopt;
  if (!v->is_string()) fail("expected a string argument, got '", type_name(*v), "'");
  return v->s;
}

std::string req_str(CallArgs& a, size_t i, const char* name, const std::string& fn) {
  const Value* v = arg(a, i, name);
  if (!v) fail(fn, "() missing required argument '", name, "'");
  if (!v->is_string()) fail(fn, "() argument must be str, not '", type_name(*v), "'");
  return v->s;
}

int64_t opt_int(CallArgs& a, size_t i, const char* name, int64_t dflt) {
  const Value* v = arg(a, i, name);
  if (!v || v->is_none()) return dflt;
  if (!v->is_integral()) fail("expected an integer argument, got '", type_name(*v), "'");
  return v->as_int();
}

Value str_list(std::vector<std::string> parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (auto& p : parts) items.push_back(Value::string(std::move(p)));
  return Value::make_list(std::move(items));
}

bool affix_match(const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const Value& v) {
    if (!v.is_string())
      fail(prefix ? "startswith" : "endswith", " first arg must be str or a tuple of str");
    const std::string& a = v.s;
    if (a.size() > s.size()) return false;
    return prefix ? s.compare(0, a.size(), a) == 0
                  : s.compare(s.size() - a.size(), a.size(), a) == 0;
  };
  if (affix.is_list()) {
    for (const auto& v : affix.list->items) {
      if (one(v)) return true;
    }
    return false;
  }
  return one(affix);
}

// str.format with automatic or explicit field numbering or names; no format specs.
std::string py_format(const std::string& fmt, CallArgs& a) {
  std::string out;
  size_t auto_index = 0;
  for (size_t k = 0; k < fmt.size(); ++k) {
    char c = fmt[k];
    if (c == '}') {
      if (k + 1 < fmt.size() && fmt[k + 1] == '}')
        ++k;
      else
        fail("Single '}' encountered in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (k + 1 < fmt.size() && fmt[k + 1] == '{') {
      out += '{';
      ++k;
      continue;
    }
    size_t e = fmt.find('}', k);
    if (e == std::string::npos) fail("Single '{' encountered in format string");
    std::string field = fmt.substr(k + 1, e - k - 1);
    if (field.find_first_of(":!.[") != std::string::npos) {
      fail("format specs and conversions are not supported in str.format");
    }
    const Value* v = nullptr;
    if (field.empty()) {
      if (auto_index >= a.pos.size()) fail("Replacement index ", auto_index, " out of range");
      v = &a.pos[auto_index++];
    } else if (std::all_of(field.begin(), field.end(), ::isdigit)) {
      size_t idx = std::stoul(field);
      if (idx >= a.pos.size()) fail("Replacement index ", idx, " out of range");
      v = &a.pos[idx];
    } else {
      for (auto& kv : a.kw) {
        if (kv.first == field) v = &kv.second;
      }
      if (!v) fail("KeyError: '", field, "'");
    }
    out += to_str(*v);
    k = e;
  }
  return out;
}

Value string_method(const std::string& s, const std::string& name, Renderer& r, CallArgs& a) {
  size_t max = r.limits().max_output_bytes;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    StripSide side = name == "strip"    ? StripSide::kBoth
                     : name == "lstrip" ? StripSide::kLeft
                                        : StripSide::kRight;
    return Value::string(py_strip(s, opt_str(a, 0, "chars"), side));
  }
  if (name == "split" || name == "rsplit") {
    return str_list(
        py_split(s, opt_str(a, 0, "sep"), opt_int(a, 1, "maxsplit", -1), name == "rsplit"));
  }
  if (name == "splitlines") {
    const Value* k = arg(a, 0, "keepends");
    return str_list(py_splitlines(s, k && truthy(*k)));
  }
  if (name == "startswith" || name == "endswith") {
    const Value* v = arg(a, 0, "prefix");
    if (!v) fail(name, "() takes at least 1 argument (0 given)");
    return Value::boolean(affix_match(s, *v, name == "startswith"));
  }
  if (name == "upper") return Value::string(py_upper(s));
  if (name == "lower" || name == "casefold") return Value::string(py_lower(s));
  if (name == "title") return Value::string(py_title(s));
  if (name == "capitalize") return Value::string(py_capitalize(s));
  if (name == "replace") {
    return Value::string(py_replace(s, req_str(a, 0, "old", name), req_str(a, 1, "new", name),
                                    opt_int(a, 2, "count", -1), max));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
    int64_t f = py_find(s, req_str(a, 0, "sub", name), name[0] == 'r');
    if (f < 0 && (name == "index" || name == "rindex")) fail("substring not found");
    return Value::integer(f);
  }
  if (name == "count") return Value::integer(py_count(s, req_str(a, 0, "sub", name)));
  if (name == "join") {
    const Value* v = arg(a, 0, "iterable");
    if (!v) fail("join() takes exactly one argument");
    std::string out;
    bool first = true;
    for (const auto& item : r.iterate(*v)) {
      if (!item.is_string())
        fail("sequence item: expected str instance, ", type_name(item), " found");
      if (!first) out += s;
      first = false;
      out += item.s;
      r.check_size(out.size());
    }
    return Value::string(std::move(out));
  }
  if (name == "format") return Value::string(py_format(s, a));
  if (name == "removeprefix" || name == "removesuffix") {
    std::string x = req_str(a, 0, "affix", name);
    bool pre = name == "removeprefix";
    if (affix_match(s, Value::string(x), pre)) {
      return Value::string(pre ? s.substr(x.size()) : s.substr(0, s.size() - x.size()));
    }
    return Value::string(s);
  }
  auto all_cps = [&](auto pred) {
    if (s.empty()) return false;
    for (uint32_t c : to_code_points(s)) {
      if (!pred(c)) return false;
    }
    return true;
  };
  if (name == "isdigit" || name == "isnumeric" || name == "isdecimal") {
    return Value::boolean(all_cps([](uint32_t c) { return c >= '0' && c <= '9'; }));
  }
  if (name == "isalpha") {
    return Value::boolean(all_cps([](uint32_t c) { return py_is_lower(c) || py_is_upper(c); }));
  }
  if (name == "isalnum") {
    return Value::boolean(all_cps(
        [](uint32_t c) { return (c >= '0' && c <= '9') || py_is_lower(c) || py_is_upper(c); }));
  }
  if (name == "isspace") return Value::boolean(all_cps(is_py_space));
  if (name == "islower" || name == "isupper") {
    bool lower = name == "islower";
    bool any = false;
    for (uint32_t c : to_code_points(s)) {
      if ((lower ? py_is_upper(c) : py_is_lower(c))) return Value::boolean(false);
      if (lower ? py_is_lower(c) : py_is_upper(c)) any = true;
    }
    return Value::boolean(any);
  }
  fail("'str' object has no attribute '", name, "'");
}

const std::set<std::string> kStrMethods = {
    "strip",        "lstrip",       "rstrip",  "split",     "rsplit",    "splitlines", "startswith",
    "endswith",     "upper",        "lower",   "casefold",  "title",     "capitalize", "replace",
    "find",         "rfind",        "index",   "rindex",    "count",     "join",       "format",
    "removeprefix", "removesuffix", "isdigit", "isnumeric", "isdecimal", "isalpha",    "isalnum",
    "isspace",      "islower",      "isupper"};
const std::set<std::string> kDictMethods = {"items", "keys", "values", "get", "copy"};
const std::set<std::string> kDictUnsafe = {"clear", "pop", "popitem", "setdefault", "update"};
const std::set<std::string> kListMethods = {"index", "count", "copy"};
const std::set<std::string> kListUnsafe = {"append", "clear", "pop",    "reverse",
                                           "insert", "sort",  "extend", "remove"};

Value dict_method(const Value& d, const std::string& name, CallArgs& a) {
  if (name == "items") {
    std::vector<Value> items;
    for (const auto& kv : d.dict->items) {
      items.push_back(Value::make_list({Value::string(kv.first), kv.second}, true));
    }
    Value view = Value::make_list(std::move(items));
    view.list->label = "dict_items";
    return view;
  }
  if (name == "keys" || name == "values") {
    std::vector<Value> items;
    for (const auto& kv : d.dict->items) {
      items.push_back(name == "keys" ? Value::string(kv.first) : kv.second);
    }
    Value view = Value::make_list(std::move(items));
    view.list->label = "dict_" + name;
    return view;
  }
  if (name == "get") {
    const Value* key = arg(a, 0, "key");
    if (!key) fail("get expected at least 1 argument, got 0");
    const Value* dflt = arg(a, 1, "default");
    const Value* found = key->is_string() ? d.dict->find(key->s) : nullptr;
    if (found) return *found;
    return dflt ? *dflt : Value::none();
  }
  Value copy = Value::make_dict();
  for (const auto& kv : d.dict->items) copy.dict->set(kv.first, kv.second);
  return copy;
}

Value list_method(const Value& l, const std::string& name, CallArgs& a) {
  const auto& items = l.list->items;
  if (name == "copy") return Value::make_list(items, l.list->is_tuple);
  const Value* x = arg(a, 0, "value");
  if (!x) fail(name, "() takes exactly one argument (0 given)");
  if (name == "count") {
    return Value::integer(
        std::count_if(items.begin(), items.end(), [&](const Value& v) { return equals(v, *x); }));
  }
  for (size_t k = 0; k < items.size(); ++k) {
    if (equals(items[k], *x)) return Value::integer(static_cast<int64_t>(k));
  }
  fail(repr(*x), " is not in list");
}

}  // namespace

bool has_method(const Value& obj, const std::string& name) {
  switch (obj.kind) {
    case Kind::kString:
      return kStrMethods.count(name) > 0;
    case Kind::kDict:
      return !obj.dict->is_namespace && (kDictMethods.count(name) || kDictUnsafe.count(name));
    case Kind::kList:
      return !obj.list->is_generator && (kListMethods.count(name) || kListUnsafe.count(name));
    default:
      return false;
  }
}

Value get_method(const Value& obj, const std::string& name) {
  bool unsafe =
      (obj.is_dict() && kDictUnsafe.count(name)) || (obj.is_list() && kListUnsafe.count(name));
  if (unsafe) {
    return Value::undefined("access to attribute '" + name + "' of '" +
                            (obj.is_dict() ? std::string("dict") : std::string("list")) +
                            "' object is unsafe.");
  }
  std::string label = (obj.is_string() ? "str." : obj.is_dict() ? "dict." : "list.") + name;
  return make_fn(label, [obj, name](Renderer& r, CallArgs& a) -> Value {
    if (obj.is_string()) return string_method(obj.s, name, r, a);
    if (obj.is_dict()) return dict_method(obj, name, a);
    return list_method(obj, name, a);
  });
}

const Value* arg(CallArgs& a, size_t index, const char* name) {
  if (index < a.pos.size()) return &a.pos[index];
  for (auto& kv : a.kw) {
    if (kv.first == name) return &kv.second;
  }
  return nullptr;
}

void check_no_extra(const CallArgs& a, size_t max_pos, std::initializer_list<const char*> kw,
                    const std::string& fn) {
  if (a.pos.size() > max_pos) fail(fn, "() got too many positional arguments");
  for (const auto& kv : a.kw) {
    bool known = false;
    for (const char* k : kw) known = known || kv.first == k;
    if (!known) fail(fn, "() got an unexpected keyword argument '", kv.first, "'");
  }
}

void add_globals(Scope& g) {
  g.vars["raise_exception"] = make_fn("raise_exception", [](Renderer&, CallArgs& a) -> Value {
    const Value* m = arg(a, 0, "message");
    throw RaisedError(m ? to_str(*m) : std::string());
  });
  g.vars["strftime_now"] = make_fn("strftime_now", [](Renderer&, CallArgs& a) -> Value {
    const Value* f = arg(a, 0, "format");
    if (!f || !f->is_string()) fail("strftime_now() needs a format string");
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[512];
    size_t n = std::strftime(buf, sizeof(buf), f->s.c_str(), &tm);
    return Value::string(std::string(buf, n));
  });
  g.vars["range"] = make_fn("range", [](Renderer& r, CallArgs& a) -> Value {
    if (a.pos.empty() || a.pos.size() > 3 || !a.kw.empty())
      fail("range expected 1 to 3 integer arguments");
    for (const auto& v : a.pos) {
      if (!v.is_integral()) fail("'", type_name(v), "' object cannot be interpreted as an integer");
    }
    int64_t start = a.pos.size() > 1 ? a.pos[0].as_int() : 0;
    int64_t stop = a.pos.size() > 1 ? a.pos[1].as_int() : a.pos[0].as_int();
    int64_t step = a.pos.size() > 2 ? a.pos[2].as_int() : 1;
    if (step == 0) fail("range() arg 3 must not be zero");
    long double n = step > 0 ? std::ceil((static_cast<long double>(stop) - start) / step)
                             : std::ceil((static_cast<long double>(start) - stop) / -step);
    if (n > static_cast<long double>(r.limits().max_range)) {
      fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (", r.limits().max_range,
           ").");
    }
    std::vector<Value> items;
    for (int64_t k = 0; k < static_cast<int64_t>(n); ++k)
      items.push_back(Value::integer(start + k * step));
    Value range = Value::make_list(std::move(items));
    range.list->label = "range(" + std::to_string(start) + ", " + std::to_string(stop) +
                        (step != 1 ? ", " + std::to_string(step) : std::string()) + ")";
    return range;
  });
  auto build_dict = [](CallArgs& a, Value& d) {
    if (a.pos.size() > 1) fail("dict expected at most 1 argument");
    if (!a.pos.empty()) {
      const Value& src = a.pos[0];
      if (src.is_dict()) {
        for (const auto& kv : src.dict->items) d.dict->set(kv.first, kv.second);
      } else if (src.is_list()) {
        for (const auto& pair : src.list->items) {
          if (!pair.is_list() || pair.list->items.size() != 2 || !pair.list->items[0].is_string()) {
            fail("dictionary update sequence element must be a (str, value) pair");
          }
          d.dict->set(pair.list->items[0].s, pair.list->items[1]);
        }
      } else {
        fail("'", type_name(src), "' object is not iterable");
      }
    }
    for (auto& kv : a.kw) d.dict->set(kv.first, kv.second);
  };
  g.vars["dict"] = make_fn("dict", [build_dict](Renderer&, CallArgs& a) -> Value {
    Value d = Value::make_dict();
    build_dict(a, d);
    return d;
  });
  g.vars["namespace"] = make_fn("namespace", [build_dict](Renderer& r, CallArgs& a) -> Value {
    Value d = Value::make_dict();
    d.dict->is_namespace = true;
    r.track_namespace(d.dict);
    build_dict(a, d);
    for (const auto& kv : d.dict->items) {
      if (!kv.first.empty() && kv.first[0] == '_') {
        fail("Chat templates cannot store underscore-prefixed attributes on a namespace, but got '",
             kv.first, "'. Please rename the attribute.");
      }
    }
    return d;
  });
}

bool contains(const Value& container, const Value& x) {
  switch (container.kind) {
    case Kind::kString:
      if (!x.is_string()) fail("'in <string>' requires string as left operand, not ", type_name(x));
      return container.s.find(x.s) != std::string::npos;
    case Kind::kList:
      for (const auto& v : container.list->items) {
        if (equals(v, x)) return true;
      }
      return false;
    case Kind::kDict:
      if (container.dict->is_namespace) break;
      return x.is_string() && container.dict->find(x.s) != nullptr;
    case Kind::kUndefined:
      return false;
    default:
      break;
  }
  fail("argument of type '", type_name(container), "' is not iterable");
}

}  // namespace jinx::jinja
