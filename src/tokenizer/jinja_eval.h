// Evaluator: walks the statement tree with jinja2's runtime semantics (scoping, Undefined,
// sandboxed attribute access) under limits on output size, loop iterations and call depth.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/check.h"
#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_value.h"

namespace jinx::jinja {

struct Limits {
  size_t max_output_bytes = 64u << 20;      // rendered text and any string built on the way
  int64_t max_loop_iterations = 1'000'000;  // total for one render, all loops together
  int max_call_depth = 100;                 // nested macro calls
  size_t max_range = 100'000;               // range() length, as jinja2's sandbox MAX_RANGE
};

// raise_exception("msg") in a template: the message reaches the caller unchanged.
class RaisedError : public Error {
 public:
  using Error::Error;
};

struct Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;

  const Value* lookup(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent.get()) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return &it->second;
    }
    return nullptr;
  }
};

class Renderer {
 public:
  Renderer(const Limits& limits, std::shared_ptr<Scope> top);
  ~Renderer();
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  // Renders a template body; errors come back as jinx::Error "template line N: ...".
  std::string render(const Body& body);

  Value eval(const Expr& e);
  Value call(const Value& callee, CallArgs& args);
  Value getattr(const Value& obj, const std::string& name);
  Value getitem(const Value& obj, const Value& key);
  // The items a for loop (or a filter) walks: list items, dict keys, string characters.
  std::vector<Value> iterate(const Value& v);
  // Counts work done by filters and loops against max_loop_iterations.
  void charge(int64_t n);
  void check_size(size_t bytes) const;
  const Limits& limits() const { return limits_; }
  // Namespaces are the only mutable values, so the only way to build a reference cycle
  // (`{% set ns.me = ns %}`); the renderer empties them when it is done.
  void track_namespace(const std::shared_ptr<DictData>& ns) { namespaces_.push_back(ns); }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Flow exec_body(const Body& body, std::string& out);
  Flow exec(const Stmt& s, std::string& out);
  Flow exec_for(const Stmt& s, std::string& out);
  void exec_set(const Stmt& s, const Value& v);
  void assign(const Target& t, const Value& v, Scope& scope);
  Value make_macro(const Stmt& s);
  Value eval_binary(const Expr& e);
  Value eval_compare(const Expr& e);
  Value eval_slice(const Expr& e);
  Value eval_call(const Expr& e);
  CallArgs eval_args(const Expr& e, size_t first_arg);
  void append(std::string& out, const std::string& text);

  Limits limits_;
  std::shared_ptr<Scope> scope_;
  int64_t iterations_ = 0;
  int depth_ = 0;
  int line_ = 0;  // line of the node being evaluated, for error messages
  std::vector<std::shared_ptr<DictData>> namespaces_;
};

// Builtins (jinja_builtins.cpp, jinja_methods.cpp).
Value apply_filter(Renderer& r, const std::string& name, const Value& v, CallArgs& args);
bool apply_test(Renderer& r, const std::string& name, const Value& v, CallArgs& args);
// jinja2 rejects unknown filter and test names when it compiles a template.
bool is_known_filter(const std::string& name);
bool is_known_test(const std::string& name);
// Methods of str, dict and list values (`s.strip()`); unknown or unsafe names -> Undefined
// whose message says why.
Value get_method(const Value& obj, const std::string& name);
bool has_method(const Value& obj, const std::string& name);
// Globals of transformers' environment: range, namespace, dict, raise_exception, strftime_now.
void add_globals(Scope& globals);

// Python arithmetic shared by the evaluator and filters.
Value binary_op(const std::string& op, const Value& a, const Value& b, size_t max_bytes);
// Python's `x in container`.
bool contains(const Value& container, const Value& x);

// Argument helpers for builtins: positional index or keyword name.
const Value* arg(CallArgs& a, size_t index, const char* name);
void check_no_extra(const CallArgs& a, size_t max_pos, std::initializer_list<const char*> kw,
                    const std::string& fn);

}  // namespace jinx::jinja
