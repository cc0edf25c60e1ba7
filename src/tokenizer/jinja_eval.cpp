#include "tokenizer/jinja_eval.h"

#include <algorithm>

namespace jinx::jinja {
namespace {

// jinja2's UndefinedError message for an Undefined value that was used.
[[noreturn]] void undefined_error(const Value& v) {
  fail(v.s.empty() ? std::string("value is undefined") : v.s);
}

Value missing_attr(const Value& obj, const std::string& name) {
  if (obj.kind == Kind::kNone) return Value::undefined("'None' has no attribute '" + name + "'");
  return Value::undefined(str("'", type_name(obj), "' has no attribute '", name, "'"));
}

Value missing_item(const Value& obj, const Value& key) {
  if (key.is_string()) return missing_attr(obj, key.s);
  return Value::undefined(type_name(obj) + " has no element " + repr(key));
}

// Python's slice index normalization (PySlice_AdjustIndices).
std::vector<int64_t> slice_indices(int64_t len, const Value& start, const Value& stop,
                                   const Value& step) {
  auto as_index = [](const Value& v, const char* what) -> int64_t {
    if (!v.is_integral()) fail("slice ", what, " must be an integer or None");
    return v.as_int();
  };
  int64_t st = step.is_none() || step.is_undefined() ? 1 : as_index(step, "step");
  if (st == 0) fail("slice step cannot be zero");
  int64_t lo, hi;
  auto clamp = [&](const Value& v, int64_t dflt) -> int64_t {
    if (v.is_none() || v.is_undefined()) return dflt;
    int64_t x = as_index(v, "index");
    if (x < 0) {
      x += len;
      if (x < 0) x = st < 0 ? -1 : 0;
    } else if (x >= len) {
      x = st < 0 ? len - 1 : len;
    }
    return x;
  };
  lo = clamp(start, st < 0 ? len - 1 : 0);
  hi = clamp(stop, st < 0 ? -1 : len);
  std::vector<int64_t> idx;
  if (st > 0) {
    for (int64_t k = lo; k < hi; k += st) idx.push_back(k);
  } else {
    for (int64_t k = lo; k > hi; k += st) idx.push_back(k);
  }
  return idx;
}

Value loop_attr(Renderer& r, const std::shared_ptr<LoopState>& ls, const std::string& name) {
  const auto& items = ls->items->items;
  int64_t n = static_cast<int64_t>(items.size());
  int64_t i = ls->index0;
  if (name == "index") return Value::integer(i + 1);
  if (name == "index0") return Value::integer(i);
  if (name == "revindex") return Value::integer(n - i);
  if (name == "revindex0") return Value::integer(n - i - 1);
  if (name == "first") return Value::boolean(i == 0);
  if (name == "last") return Value::boolean(i == n - 1);
  if (name == "length") return Value::integer(n);
  if (name == "depth") return Value::integer(ls->depth0 + 1);
  if (name == "depth0") return Value::integer(ls->depth0);
  if (name == "previtem") {
    return i > 0 ? items[i - 1] : Value::undefined("there is no previous item");
  }
  if (name == "nextitem") {
    return i + 1 < n ? items[i + 1] : Value::undefined("there is no next item");
  }
  if (name == "cycle" || name == "changed") {
    Value fn;
    fn.kind = Kind::kFunction;
    fn.fn = std::make_shared<Function>();
    fn.fn->name = "loop." + name;
    std::weak_ptr<LoopState> weak = ls;
    bool is_cycle = name == "cycle";
    fn.fn->call = [weak, is_cycle](Renderer&, CallArgs& a) -> Value {
      auto st = weak.lock();
      if (!st) fail("loop object is no longer valid");
      if (is_cycle) {
        if (a.pos.empty()) fail("no items for cycling given");
        return a.pos[static_cast<size_t>(st->index0) % a.pos.size()];
      }
      bool same = st->changed_seen && st->changed_last.size() == a.pos.size() &&
                  std::equal(a.pos.begin(), a.pos.end(), st->changed_last.begin(), equals);
      st->changed_seen = true;
      st->changed_last = a.pos;
      return Value::boolean(!same);
    };
    return fn;
  }
  (void)r;
  return Value::undefined("'LoopContext object' has no attribute '" + name + "'");
}

}  // namespace

Renderer::Renderer(const Limits& limits, std::shared_ptr<Scope> top)
    : limits_(limits), scope_(std::move(top)) {}

Renderer::~Renderer() {
  for (auto& ns : namespaces_) ns->items.clear();
}

void Renderer::charge(int64_t n) {
  iterations_ += n;
  if (iterations_ > limits_.max_loop_iterations) {
    fail("loop iteration limit exceeded (", limits_.max_loop_iterations, ")");
  }
}

void Renderer::check_size(size_t bytes) const {
  if (bytes > limits_.max_output_bytes) {
    fail("output size limit exceeded (", limits_.max_output_bytes, " bytes)");
  }
}

void Renderer::append(std::string& out, const std::string& text) {
  check_size(out.size() + text.size());
  out += text;
}

std::string Renderer::render(const Body& body) {
  std::string out;
  try {
    exec_body(body, out);
  } catch (const RaisedError&) {
    throw;
  } catch (const Error& e) {
    fail("template line ", line_, ": ", e.what());
  }
  return out;
}

Renderer::Flow Renderer::exec_body(const Body& body, std::string& out) {
  for (const auto& s : body) {
    Flow f = exec(*s, out);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

Renderer::Flow Renderer::exec(const Stmt& s, std::string& out) {
  line_ = s.line;
  switch (s.kind) {
    case StmtKind::kData:
      append(out, s.text);
      return Flow::kNormal;
    case StmtKind::kOutput:
      append(out, to_str(eval(*s.expr)));
      return Flow::kNormal;
    case StmtKind::kIf:
      return exec_body(truthy(eval(*s.expr)) ? s.body : s.else_body, out);
    case StmtKind::kFor:
      return exec_for(s, out);
    case StmtKind::kSet:
      exec_set(s, eval(*s.expr));
      return Flow::kNormal;
    case StmtKind::kSetBlock:
    case StmtKind::kFilterBlock: {
      std::string inner;
      Flow f = exec_body(s.body, inner);
      Value v = Value::string(std::move(inner));
      if (s.expr) {
        // Apply the filter chain; its innermost base is null and stands for the body.
        std::vector<const Expr*> chain;
        for (const Expr* e = s.expr.get(); e; e = e->args[0].get()) chain.push_back(e);
        for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
          CallArgs args = eval_args(**it, 1);
          line_ = (*it)->line;
          v = apply_filter(*this, (*it)->name, v, args);
        }
      }
      if (s.kind == StmtKind::kSetBlock) {
        exec_set(s, v);
      } else {
        append(out, to_str(v));
      }
      return f;
    }
    case StmtKind::kMacro:
      scope_->vars[s.name] = make_macro(s);
      return Flow::kNormal;
    case StmtKind::kWith: {
      auto inner = std::make_shared<Scope>();
      inner->parent = scope_;
      for (const auto& [target, expr] : s.assigns) assign(target, eval(*expr), *inner);
      std::swap(scope_, inner);
      Flow f;
      try {
        f = exec_body(s.body, out);
      } catch (...) {
        std::swap(scope_, inner);
        throw;
      }
      std::swap(scope_, inner);
      return f;
    }
    case StmtKind::kBreak:
      return Flow::kBreak;
    case StmtKind::kContinue:
      return Flow::kContinue;
    case StmtKind::kBlock:
      return exec_body(s.body, out);
  }
  return Flow::kNormal;
}

Renderer::Flow Renderer::exec_for(const Stmt& s, std::string& out) {
  std::vector<Value> items = iterate(eval(*s.expr));
  auto outer = scope_;
  if (s.cond) {
    std::vector<Value> kept;
    for (auto& item : items) {
      charge(1);
      auto probe = std::make_shared<Scope>();
      probe->parent = outer;
      assign(s.target, item, *probe);
      scope_ = probe;
      bool keep;
      try {
        keep = truthy(eval(*s.cond));
      } catch (...) {
        scope_ = outer;
        throw;
      }
      scope_ = outer;
      if (keep) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  auto state = std::make_shared<LoopState>();
  state->items = std::make_shared<ListData>();
  state->items->items = std::move(items);
  Value loop_value;
  loop_value.kind = Kind::kLoop;
  loop_value.loop = state;
  const auto& list = state->items->items;
  try {
    for (size_t k = 0; k < list.size(); ++k) {
      charge(1);
      state->index0 = static_cast<int64_t>(k);
      auto iter_scope = std::make_shared<Scope>();
      iter_scope->parent = outer;
      iter_scope->vars["loop"] = loop_value;
      assign(s.target, list[k], *iter_scope);
      scope_ = iter_scope;
      Flow f = exec_body(s.body, out);
      scope_ = outer;
      if (f == Flow::kBreak) break;
    }
  } catch (...) {
    scope_ = outer;
    throw;
  }
  if (list.empty() && !s.else_body.empty()) {
    auto else_scope = std::make_shared<Scope>();
    else_scope->parent = outer;
    scope_ = else_scope;
    try {
      exec_body(s.else_body, out);
    } catch (...) {
      scope_ = outer;
      throw;
    }
    scope_ = outer;
  }
  return Flow::kNormal;
}

void Renderer::assign(const Target& t, const Value& v, Scope& scope) {
  if (!t.is_tuple) {
    scope.vars[t.name] = v;
    return;
  }
  std::vector<Value> parts = iterate(v);
  if (parts.size() != t.names.size()) {
    fail(
        parts.size() < t.names.size() ? "not enough values to unpack" : "too many values to unpack",
        " (expected ", t.names.size(), ", got ", parts.size(), ")");
  }
  for (size_t k = 0; k < parts.size(); ++k) scope.vars[t.names[k]] = parts[k];
}

void Renderer::exec_set(const Stmt& s, const Value& v) {
  const Target& t = s.target;
  if (t.attr.empty()) {
    assign(t, v, *scope_);
    return;
  }
  const Value* ns = scope_->lookup(t.name);
  if (!ns || ns->kind != Kind::kDict || !ns->dict->is_namespace) {
    fail("cannot assign attribute on non-namespace object");
  }
  if (!t.attr.empty() && t.attr[0] == '_') {
    fail("Chat templates cannot store underscore-prefixed attributes on a namespace, but got '",
         t.attr, "'. Please rename the attribute.");
  }
  ns->dict->set(t.attr, v);
}

Value Renderer::make_macro(const Stmt& s) {
  Value fn;
  fn.kind = Kind::kFunction;
  fn.fn = std::make_shared<Function>();
  fn.fn->name = s.name;
  // Weak: the defining scope holds the macro, so a strong reference would be a cycle.
  std::weak_ptr<Scope> weak_scope = scope_;
  const Stmt* stmt = &s;
  fn.fn->call = [weak_scope, stmt](Renderer& r, CallArgs& a) -> Value {
    std::shared_ptr<Scope> def_scope = weak_scope.lock();
    if (!def_scope) fail("macro '", stmt->name, "' called after its defining scope ended");
    if (r.depth_ >= r.limits_.max_call_depth) {
      fail("macro call depth limit exceeded (", r.limits_.max_call_depth, ")");
    }
    auto scope = std::make_shared<Scope>();
    scope->parent = def_scope;
    const auto& params = stmt->params;
    std::vector<Value> varargs;
    for (size_t k = 0; k < a.pos.size(); ++k) {
      if (k < params.size()) {
        scope->vars[params[k].name] = a.pos[k];
      } else {
        varargs.push_back(a.pos[k]);
      }
    }
    Value kwargs = Value::make_dict();
    for (auto& [key, val] : a.kw) {
      bool is_param = false;
      for (size_t k = 0; k < params.size(); ++k) {
        if (params[k].name != key) continue;
        if (k < a.pos.size())
          fail("macro '", stmt->name, "' got multiple values for argument '", key, "'");
        is_param = true;
        scope->vars[key] = val;
      }
      if (!is_param) kwargs.dict->set(key, val);
    }
    scope->vars["varargs"] = Value::make_list(std::move(varargs), true);
    scope->vars["kwargs"] = kwargs;
    auto saved = r.scope_;
    r.scope_ = scope;
    ++r.depth_;
    std::string out;
    try {
      for (const auto& p : params) {
        if (scope->vars.count(p.name)) continue;
        scope->vars[p.name] = p.default_value
                                  ? r.eval(*p.default_value)
                                  : Value::undefined("parameter '" + p.name + "' was not provided");
      }
      r.exec_body(stmt->body, out);
    } catch (...) {
      r.scope_ = saved;
      --r.depth_;
      throw;
    }
    r.scope_ = saved;
    --r.depth_;
    return Value::string(std::move(out));
  };
  return fn;
}

std::vector<Value> Renderer::iterate(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
      return {};
    case Kind::kList:
      return v.list->items;
    case Kind::kDict: {
      if (v.dict->is_namespace) break;
      std::vector<Value> keys;
      for (const auto& kv : v.dict->items) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case Kind::kString: {
      std::vector<Value> chars;
      size_t pos = 0;
      while (pos < v.s.size()) {
        size_t start = pos;
        next_code_point(v.s, pos);
        chars.push_back(Value::string(v.s.substr(start, pos - start)));
      }
      return chars;
    }
    case Kind::kLoop:
      return v.loop->items->items;
    default:
      break;
  }
  fail("'", type_name(v), "' is not iterable");
}

Value Renderer::getattr(const Value& obj, const std::string& name) {
  switch (obj.kind) {
    case Kind::kUndefined:
      undefined_error(obj);
    case Kind::kDict:
      if (obj.dict->is_namespace) {
        const Value* v = obj.dict->find(name);
        return v ? *v : missing_attr(obj, name);
      }
      if (has_method(obj, name)) return get_method(obj, name);
      if (const Value* v = obj.dict->find(name)) return *v;
      return missing_attr(obj, name);
    case Kind::kLoop:
      return loop_attr(*this, obj.loop, name);
    default:
      if (has_method(obj, name)) return get_method(obj, name);
      return missing_attr(obj, name);
  }
}

Value Renderer::getitem(const Value& obj, const Value& key) {
  switch (obj.kind) {
    case Kind::kUndefined:
      undefined_error(obj);
    case Kind::kList:
    case Kind::kString: {
      if (!key.is_integral() || (obj.is_list() && obj.list->is_generator)) break;
      int64_t idx = key.as_int();
      if (obj.kind == Kind::kList) {
        int64_t n = static_cast<int64_t>(obj.list->items.size());
        if (idx < 0) idx += n;
        if (idx < 0 || idx >= n) return missing_item(obj, key);
        return obj.list->items[static_cast<size_t>(idx)];
      }
      std::vector<uint32_t> cps = to_code_points(obj.s);
      int64_t n = static_cast<int64_t>(cps.size());
      if (idx < 0) idx += n;
      if (idx < 0 || idx >= n) return missing_item(obj, key);
      return Value::string(from_code_points(cps, idx, idx + 1));
    }
    case Kind::kDict:
      if (key.is_string() && !obj.dict->is_namespace) {
        if (const Value* v = obj.dict->find(key.s)) return *v;
      }
      break;
    default:
      break;
  }
  if (key.is_string()) return getattr(obj, key.s);
  return missing_item(obj, key);
}

CallArgs Renderer::eval_args(const Expr& e, size_t first_arg) {
  CallArgs a;
  for (size_t k = first_arg; k < e.args.size(); ++k) a.pos.push_back(eval(*e.args[k]));
  for (const auto& [key, expr] : e.kwargs) a.kw.emplace_back(key, eval(*expr));
  if (e.dyn_args) {
    for (auto& v : iterate(eval(*e.dyn_args))) a.pos.push_back(std::move(v));
  }
  if (e.dyn_kwargs) {
    Value d = eval(*e.dyn_kwargs);
    if (!d.is_dict()) fail("argument after ** must be a mapping");
    for (const auto& kv : d.dict->items) a.kw.push_back(kv);
  }
  return a;
}

Value Renderer::call(const Value& callee, CallArgs& args) {
  if (callee.kind == Kind::kFunction) return callee.fn->call(*this, args);
  if (callee.is_undefined()) undefined_error(callee);
  fail("'", type_name(callee), "' is not callable");
}

Value Renderer::eval_call(const Expr& e) {
  Value callee = eval(*e.args[0]);
  CallArgs args = eval_args(e, 1);
  line_ = e.line;
  return call(callee, args);
}

Value Renderer::eval_slice(const Expr& e) {
  Value obj = eval(*e.args[0]);
  Value parts[3];
  for (int k = 0; k < 3; ++k) {
    parts[k] = e.args[k + 1] ? eval(*e.args[k + 1]) : Value::none();
  }
  line_ = e.line;
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.kind == Kind::kList && !obj.list->is_generator) {
    auto idx =
        slice_indices(static_cast<int64_t>(obj.list->items.size()), parts[0], parts[1], parts[2]);
    std::vector<Value> out;
    out.reserve(idx.size());
    for (int64_t k : idx) out.push_back(obj.list->items[static_cast<size_t>(k)]);
    return Value::make_list(std::move(out), obj.list->is_tuple);
  }
  if (obj.kind == Kind::kString) {
    std::vector<uint32_t> cps = to_code_points(obj.s);
    auto idx = slice_indices(static_cast<int64_t>(cps.size()), parts[0], parts[1], parts[2]);
    std::string out;
    for (int64_t k : idx) append_utf8(out, cps[static_cast<size_t>(k)]);
    return Value::string(std::move(out));
  }
  return Value::undefined(str("'", type_name(obj), "' is not subscriptable"));
}

Value Renderer::eval_compare(const Expr& e) {
  Value left = eval(*e.args[0]);
  for (size_t k = 0; k < e.ops.size(); ++k) {
    Value right = eval(*e.args[k + 1]);
    line_ = e.line;
    const std::string& op = e.ops[k];
    bool ok;
    if (op == "==") {
      ok = equals(left, right);
    } else if (op == "!=") {
      ok = !equals(left, right);
    } else if (op == "<") {
      ok = less(left, right, "<");
    } else if (op == "<=") {
      ok = !less(right, left, "<=");
    } else if (op == ">") {
      ok = less(right, left, ">");
    } else if (op == ">=") {
      ok = !less(left, right, ">=");
    } else if (op == "in") {
      ok = contains(right, left);
    } else {
      ok = !contains(right, left);
    }
    if (!ok) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Value Renderer::eval_binary(const Expr& e) {
  const std::string& op = e.name;
  Value a = eval(*e.args[0]);
  if (op == "and") return truthy(a) ? eval(*e.args[1]) : a;
  if (op == "or") return truthy(a) ? a : eval(*e.args[1]);
  Value b = eval(*e.args[1]);
  line_ = e.line;
  if (op == "~") {
    std::string s = to_str(a);
    std::string t = to_str(b);
    check_size(s.size() + t.size());
    return Value::string(s + t);
  }
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  return binary_op(op, a, b, limits_.max_output_bytes);
}

Value Renderer::eval(const Expr& e) {
  line_ = e.line;
  switch (e.kind) {
    case ExprKind::kConst:
      return e.value;
    case ExprKind::kName: {
      const Value* v = scope_->lookup(e.name);
      return v ? *v : Value::undefined("'" + e.name + "' is undefined");
    }
    case ExprKind::kGetattr: {
      Value obj = eval(*e.args[0]);
      line_ = e.line;
      return getattr(obj, e.name);
    }
    case ExprKind::kGetitem: {
      Value obj = eval(*e.args[0]);
      Value key = eval(*e.args[1]);
      line_ = e.line;
      return getitem(obj, key);
    }
    case ExprKind::kSlice:
      return eval_slice(e);
    case ExprKind::kCall:
      return eval_call(e);
    case ExprKind::kFilter:
    case ExprKind::kTest: {
      Value v = eval(*e.args[0]);
      CallArgs args = eval_args(e, 1);
      line_ = e.line;
      if (e.kind == ExprKind::kFilter) return apply_filter(*this, e.name, v, args);
      return Value::boolean(apply_test(*this, e.name, v, args) != e.negated);
    }
    case ExprKind::kUnary: {
      Value v = eval(*e.args[0]);
      line_ = e.line;
      if (e.name == "not") return Value::boolean(!truthy(v));
      if (v.is_undefined()) undefined_error(v);
      if (!v.is_number()) fail("bad operand type for unary ", e.name, ": '", type_name(v), "'");
      if (e.name == "+") return v.kind == Kind::kBool ? Value::integer(v.as_int()) : v;
      if (v.kind == Kind::kFloat) return Value::number(-v.f);
      if (v.as_int() == INT64_MIN) fail("integer overflow");
      return Value::integer(-v.as_int());
    }
    case ExprKind::kBinary:
      return eval_binary(e);
    case ExprKind::kCompare:
      return eval_compare(e);
    case ExprKind::kCondExpr:
      if (truthy(eval(*e.args[0]))) return eval(*e.args[1]);
      if (e.args[2]) return eval(*e.args[2]);
      return Value::undefined(
          "the inline if-expression evaluated to false and no else section was defined.");
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      items.reserve(e.args.size());
      for (const auto& a : e.args) items.push_back(eval(*a));
      return Value::make_list(std::move(items), e.kind == ExprKind::kTuple);
    }
    case ExprKind::kDict: {
      Value d = Value::make_dict();
      for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
        Value key = eval(*e.args[k]);
        Value val = eval(*e.args[k + 1]);
        if (!key.is_string()) fail("only string keys are supported in dict literals");
        d.dict->set(key.s, std::move(val));
      }
      return d;
    }
  }
  fail("internal error: unknown expression");
}

}  // namespace jinx::jinja
