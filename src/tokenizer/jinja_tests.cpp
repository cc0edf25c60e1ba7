// jinja2's builtin tests (`x is defined`, `x is eq 3`, ...).
#include <unordered_map>

#include "tokenizer/jinja_eval.h"
#include "tokenizer/jinja_strings.h"

namespace jinx::jinja {
namespace {

using TestFn = bool (*)(Renderer&, const Value&, CallArgs&);

bool t_defined(Renderer&, const Value& v, CallArgs&) {
  return !v.is_undefined();
}
bool t_undefined(Renderer&, const Value& v, CallArgs&) {
  return v.is_undefined();
}
bool t_none(Renderer&, const Value& v, CallArgs&) {
  return v.is_none();
}
bool t_boolean(Renderer&, const Value& v, CallArgs&) {
  return v.kind == Kind::kBool;
}
bool t_true(Renderer&, const Value& v, CallArgs&) {
  return v.kind == Kind::kBool && v.b;
}
bool t_false(Renderer&, const Value& v, CallArgs&) {
  return v.kind == Kind::kBool && !v.b;
}
bool t_integer(Renderer&, const Value& v, CallArgs&) {
  return v.kind == Kind::kInt;
}
bool t_float(Renderer&, const Value& v, CallArgs&) {
  return v.kind == Kind::kFloat;
}
bool t_number(Renderer&, const Value& v, CallArgs&) {
  return v.is_number();
}
bool t_string(Renderer&, const Value& v, CallArgs&) {
  return v.is_string();
}
bool t_mapping(Renderer&, const Value& v, CallArgs&) {
  return v.is_dict() && !v.dict->is_namespace;
}
bool t_iterable(Renderer&, const Value& v, CallArgs&) {
  return v.is_undefined() || v.is_string() || v.is_list() || v.kind == Kind::kLoop ||
         (v.is_dict() && !v.dict->is_namespace);
}
bool t_sequence(Renderer&, const Value& v, CallArgs&) {
  return v.is_undefined() || v.is_string() || (v.is_list() && !v.list->is_generator) ||
         (v.is_dict() && !v.dict->is_namespace);
}
bool t_callable(Renderer&, const Value& v, CallArgs&) {
  return v.kind == Kind::kFunction;
}
bool t_odd(Renderer&, const Value& v, CallArgs&) {
  if (!v.is_integral()) fail("odd test needs an integer");
  return v.as_int() % 2 != 0;
}
bool t_even(Renderer&, const Value& v, CallArgs&) {
  if (!v.is_integral()) fail("even test needs an integer");
  return v.as_int() % 2 == 0;
}
bool t_divisibleby(Renderer&, const Value& v, CallArgs& a) {
  const Value* n = arg(a, 0, "num");
  if (!n || !n->is_integral() || !v.is_integral() || n->as_int() == 0)
    fail("divisibleby needs non-zero integers");
  return v.as_int() % n->as_int() == 0;
}
bool t_lower(Renderer&, const Value& v, CallArgs&) {
  std::string s = to_str(v);
  return py_lower(s) == s && py_upper(s) != s;
}
bool t_upper(Renderer&, const Value& v, CallArgs&) {
  std::string s = to_str(v);
  return py_upper(s) == s && py_lower(s) != s;
}
const Value& other(CallArgs& a) {
  const Value* o = arg(a, 0, "other");
  if (!o) fail("comparison test needs an argument");
  return *o;
}
bool t_eq(Renderer&, const Value& v, CallArgs& a) {
  return equals(v, other(a));
}
bool t_ne(Renderer&, const Value& v, CallArgs& a) {
  return !equals(v, other(a));
}
bool t_lt(Renderer&, const Value& v, CallArgs& a) {
  return less(v, other(a));
}
bool t_le(Renderer&, const Value& v, CallArgs& a) {
  return !less(other(a), v);
}
bool t_gt(Renderer&, const Value& v, CallArgs& a) {
  return less(other(a), v);
}
bool t_ge(Renderer&, const Value& v, CallArgs& a) {
  return !less(v, other(a));
}
bool t_in(Renderer&, const Value& v, CallArgs& a) {
  const Value* seq = arg(a, 0, "seq");
  if (!seq) fail("in test needs a container");
  return contains(*seq, v);
}
bool t_sameas(Renderer&, const Value& v, CallArgs& a) {
  const Value& o = other(a);
  if (v.kind != o.kind) return false;
  switch (v.kind) {
    case Kind::kNone:
    case Kind::kUndefined:
      return true;
    case Kind::kBool:
      return v.b == o.b;
    case Kind::kList:
      return v.list == o.list;
    case Kind::kDict:
      return v.dict == o.dict;
    case Kind::kFunction:
      return v.fn == o.fn;
    default:
      return equals(v, o);
  }
}
bool t_escaped(Renderer&, const Value&, CallArgs&) {
  return false;
}
bool t_filter(Renderer&, const Value& v, CallArgs&) {
  return v.is_string() && is_known_filter(v.s);
}
bool t_test(Renderer&, const Value& v, CallArgs&);

const std::unordered_map<std::string, TestFn>& tests() {
  static const std::unordered_map<std::string, TestFn> kTests = {{"defined", t_defined},
                                                                 {"undefined", t_undefined},
                                                                 {"none", t_none},
                                                                 {"boolean", t_boolean},
                                                                 {"true", t_true},
                                                                 {"false", t_false},
                                                                 {"integer", t_integer},
                                                                 {"float", t_float},
                                                                 {"number", t_number},
                                                                 {"string", t_string},
                                                                 {"mapping", t_mapping},
                                                                 {"iterable", t_iterable},
                                                                 {"sequence", t_sequence},
                                                                 {"callable", t_callable},
                                                                 {"odd", t_odd},
                                                                 {"even", t_even},
                                                                 {"divisibleby", t_divisibleby},
                                                                 {"lower", t_lower},
                                                                 {"upper", t_upper},
                                                                 {"eq", t_eq},
                                                                 {"equalto", t_eq},
                                                                 {"==", t_eq},
                                                                 {"ne", t_ne},
                                                                 {"!=", t_ne},
                                                                 {"lt", t_lt},
                                                                 {"lessthan", t_lt},
                                                                 {"<", t_lt},
                                                                 {"le", t_le},
                                                                 {"<=", t_le},
                                                                 {"gt", t_gt},
                                                                 {"greaterthan", t_gt},
                                                                 {">", t_gt},
                                                                 {"ge", t_ge},
                                                                 {">=", t_ge},
                                                                 {"in", t_in},
                                                                 {"sameas", t_sameas},
                                                                 {"escaped", t_escaped},
                                                                 {"filter", t_filter},
                                                                 {"test", t_test}};
  return kTests;
}

bool t_test(Renderer&, const Value& v, CallArgs&) {
  return v.is_string() && tests().count(v.s);
}

}  // namespace

bool is_known_test(const std::string& name) {
  return tests().count(name) > 0;
}

bool apply_test(Renderer& r, const std::string& name, const Value& v, CallArgs& args) {
  auto it = tests().find(name);
  if (it == tests().end()) fail("No test named '", name, "'.");
  return it->second(r, v, args);
}

}  // namespace jinx::jinja
