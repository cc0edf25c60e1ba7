// Values of the Jinja interpreter, with Python's semantics (what jinja2 does when it runs a
// chat template): truthiness, equality, ordering, str() and repr(), and json.dumps.
//
// Lists and dicts are shared by pointer and never mutated after construction (transformers
// renders with ImmutableSandboxedEnvironment), except namespaces, which templates mutate with
// `{% set ns.x = ... %}`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace jinx::jinja {

struct Value;
struct ListData;
struct DictData;
struct Function;
struct LoopState;

enum class Kind : uint8_t {
  kUndefined,
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kList,      // list or tuple (ListData::is_tuple)
  kDict,      // dict, or a namespace() object (DictData::is_namespace)
  kFunction,  // builtin function, macro or bound method
  kLoop,      // the `loop` variable of a for loop
};

struct Value {
  Kind kind = Kind::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // kString: the text; kUndefined: why it is undefined (for error messages)
  std::shared_ptr<ListData> list;
  std::shared_ptr<DictData> dict;
  std::shared_ptr<Function> fn;
  std::shared_ptr<LoopState> loop;

  static Value undefined(std::string why = {}) {
    Value v;
    v.s = std::move(why);
    return v;
  }
  static Value none() {
    Value v;
    v.kind = Kind::kNone;
    return v;
  }
  static Value boolean(bool x) {
    Value v;
    v.kind = Kind::kBool;
    v.b = x;
    return v;
  }
  static Value integer(int64_t x) {
    Value v;
    v.kind = Kind::kInt;
    v.i = x;
    return v;
  }
  static Value number(double x) {
    Value v;
    v.kind = Kind::kFloat;
    v.f = x;
    return v;
  }
  static Value string(std::string x) {
    Value v;
    v.kind = Kind::kString;
    v.s = std::move(x);
    return v;
  }
  static Value make_list(std::vector<Value> items, bool is_tuple = false);
  static Value make_dict();
  static Value from_json(const nlohmann::ordered_json& j);
  static Value from_json(const nlohmann::json& j);

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_none() const { return kind == Kind::kNone; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_list() const { return kind == Kind::kList; }
  bool is_dict() const { return kind == Kind::kDict; }
  bool is_number() const {
    return kind == Kind::kInt || kind == Kind::kFloat || kind == Kind::kBool;
  }
  bool is_integral() const { return kind == Kind::kInt || kind == Kind::kBool; }
  int64_t as_int() const { return kind == Kind::kBool ? (b ? 1 : 0) : i; }
  double as_double() const { return kind == Kind::kFloat ? f : static_cast<double>(as_int()); }
};

struct ListData {
  std::vector<Value> items;
  bool is_tuple = false;
  // The result of a jinja2 filter that returns a generator (map, select, items, ...): always
  // truthy, has no len(), cannot be indexed; `| list` makes it a plain list.
  bool is_generator = false;
  // How Python prints what this list stands for: "dict_items", "dict_keys", "dict_values"
  // wrap the list repr; "range(...)" replaces it.
  std::string label;
};

// An insertion-ordered dict with string keys (what JSON and chat templates use).
struct DictData {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;

  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);

 private:
  std::unordered_map<std::string, size_t> index_;  // built once the dict grows past a few keys
};

class Renderer;

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

struct Function {
  std::string name;
  std::function<Value(Renderer&, CallArgs&)> call;
};

struct LoopState {
  std::shared_ptr<ListData> items;
  int64_t index0 = 0;
  int64_t depth0 = 0;
  std::vector<Value> changed_last;
  bool changed_seen = false;
};

// Python's bool(x).
bool truthy(const Value& v);
// Python's x == y (1 == 1.0 == True; Undefined equals only Undefined).
bool equals(const Value& a, const Value& b);
// Python's a < b; throws for unorderable types. `op` names the operator in the message.
bool less(const Value& a, const Value& b, const char* op = "<");
// Python's str(x) and repr(x); Undefined prints as "".
std::string to_str(const Value& v);
std::string repr(const Value& v);
// Python's float repr: shortest round-trip digits, '1.0', '1e+16', 'inf', 'nan'.
std::string float_repr(double d);
// jinja2's type names in messages: "'dict object' has no attribute 'x'".
std::string type_name(const Value& v);

struct JsonOptions {
  bool ensure_ascii = false;
  bool has_indent = false;
  std::string indent;          // one level of indentation
  std::string item_separator;  // ", " or "," (from indent/separators)
  std::string key_separator;   // ": "
  bool sort_keys = false;
};
// Python's json.dumps(v, ...) as transformers' tojson filter calls it.
std::string to_json(const Value& v, const JsonOptions& opts);

// --- UTF-8 helpers (Python strings count code points) ---
// Decodes the code point at s[pos], advancing pos; invalid bytes decode as U+FFFD, one byte each.
uint32_t next_code_point(std::string_view s, size_t& pos);
void append_utf8(std::string& out, uint32_t cp);
std::vector<uint32_t> to_code_points(std::string_view s);
std::string from_code_points(const std::vector<uint32_t>& cps, size_t begin, size_t end);
size_t code_point_count(std::string_view s);
// Python's str.isspace() for one code point.
bool is_py_space(uint32_t cp);

}  // namespace jinx::jinja
