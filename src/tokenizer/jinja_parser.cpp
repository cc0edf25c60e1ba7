#include "tokenizer/jinja_parser.h"

#include <initializer_list>

#include "core/check.h"
#include "tokenizer/jinja_eval.h"
#include "tokenizer/jinja_lexer.h"

namespace jinx::jinja {
namespace {

constexpr int kMaxNesting = 200;  // expression / block nesting; deeper input is rejected

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  Body parse_all() {
    Body body = subparse({});
    if (cur().type != Tok::kEof) error("unexpected tag");
    return body;
  }

 private:
  // ---- token stream ----
  const Token& cur() const { return t_[pos_]; }
  const Token& look() const { return t_[pos_ + 1 < t_.size() ? pos_ + 1 : pos_]; }
  void next() {
    if (pos_ + 1 < t_.size()) ++pos_;
  }
  bool is_op(const char* op) const { return cur().type == Tok::kOp && cur().value == op; }
  bool is_name(const char* n) const { return cur().type == Tok::kName && cur().value == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }

  [[noreturn]] void error(const std::string& msg) const {
    fail("template line ", cur().line, ": ", msg);
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::kData:
        return "template data";
      case Tok::kVarBegin:
        return "begin of print statement";
      case Tok::kVarEnd:
        return "end of print statement";
      case Tok::kBlockBegin:
        return "begin of statement block";
      case Tok::kBlockEnd:
        return "end of statement block";
      case Tok::kEof:
        return "end of template";
      case Tok::kString:
        return "string";
      case Tok::kInt:
        return "integer";
      case Tok::kFloat:
        return "float";
      default:
        return "'" + t.value + "'";
    }
  }

  void expect_op(const char* op) {
    if (!skip_op(op)) error(str("expected token '", op, "', got ", describe(cur())));
  }
  std::string expect_name() {
    if (cur().type != Tok::kName) error("expected token 'name', got " + describe(cur()));
    std::string v = cur().value;
    next();
    return v;
  }
  void expect(Tok type, const char* what) {
    if (cur().type != type) error(str("expected token '", what, "', got ", describe(cur())));
    next();
  }

  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p_(p) {
      if (++p_->depth_ > kMaxNesting) p_->error("template nested too deeply");
    }
    ~DepthGuard() { --p_->depth_; }
    Parser* p_;
  };

  ExprPtr node(ExprKind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // ---- statements ----
  Body subparse(std::initializer_list<const char*> end_tags) {
    Body body;
    while (cur().type != Tok::kEof) {
      const Token& tok = cur();
      if (tok.type == Tok::kData) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kData;
        s->line = tok.line;
        s->text = tok.value;
        body.push_back(std::move(s));
        next();
      } else if (tok.type == Tok::kVarBegin) {
        next();
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kOutput;
        s->line = tok.line;
        s->expr = parse_tuple(true, {}, false);
        expect(Tok::kVarEnd, "end of print statement");
        body.push_back(std::move(s));
      } else if (tok.type == Tok::kBlockBegin) {
        next();
        for (const char* end : end_tags) {
          if (is_name(end)) return body;
        }
        body.push_back(parse_statement());
        expect(Tok::kBlockEnd, "end of statement block");
      } else {
        error("unexpected " + describe(tok));
      }
    }
    if (end_tags.size() > 0) {
      std::string tags;
      for (const char* end : end_tags)
        tags += std::string(tags.empty() ? "" : " or ") + "'" + end + "'";
      error("Unexpected end of template. Jinja was looking for the following tags: " + tags + ".");
    }
    return body;
  }

  // Parses statements up to one of end_tags after the current block's end.
  Body parse_block_body(std::initializer_list<const char*> end_tags) {
    expect(Tok::kBlockEnd, "end of statement block");
    DepthGuard guard(this);
    return subparse(end_tags);
  }

  StmtPtr make_stmt(StmtKind kind, int line) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = line;
    return s;
  }

  StmtPtr parse_statement() {
    if (cur().type != Tok::kName) error("tag name expected");
    std::string tag = cur().value;
    int line = cur().line;
    next();
    if (tag == "if") return parse_if(line);
    if (tag == "for") return parse_for(line);
    if (tag == "set") return parse_set(line);
    if (tag == "macro") return parse_macro(line);
    if (tag == "filter") return parse_filter_block(line);
    if (tag == "with") return parse_with(line);
    if (tag == "print") {
      auto s = make_stmt(StmtKind::kOutput, line);
      s->expr = parse_tuple(true, {}, false);
      return s;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) error("'" + tag + "' outside of a loop");
      return make_stmt(tag == "break" ? StmtKind::kBreak : StmtKind::kContinue, line);
    }
    if (tag == "generation") {  // transformers' AssistantTracker: renders its body as is
      auto s = make_stmt(StmtKind::kBlock, line);
      s->body = parse_block_body({"endgeneration"});
      next();
      return s;
    }
    if (tag == "extends" || tag == "include" || tag == "import" || tag == "from" ||
        tag == "block" || tag == "call" || tag == "autoescape" || tag == "do") {
      fail("template line ", line, ": unsupported tag '", tag, "'");
    }
    fail("template line ", line, ": Encountered unknown tag '", tag, "'.");
  }

  StmtPtr parse_if(int line) {
    auto s = make_stmt(StmtKind::kIf, line);
    s->expr = parse_tuple(false, {}, false);
    s->body = parse_block_body({"elif", "else", "endif"});
    if (is_name("elif")) {
      int eline = cur().line;
      next();
      s->else_body.push_back(parse_if(eline));
      return s;  // the nested if consumed endif
    }
    if (skip_name("else")) s->else_body = parse_block_body({"endif"});
    next();  // endif
    return s;
  }

  StmtPtr parse_for(int line) {
    auto s = make_stmt(StmtKind::kFor, line);
    s->target = parse_assign_target(false, "in");
    if (!skip_name("in")) error("expected 'in', got " + describe(cur()));
    s->expr = parse_tuple(false, {"recursive"}, false);
    if (skip_name("if")) s->cond = parse_expression(true);
    if (skip_name("recursive")) fail("template line ", line, ": recursive loops are not supported");
    ++loop_depth_;
    s->body = parse_block_body({"endfor", "else"});
    --loop_depth_;
    if (skip_name("else")) {
      int saved = loop_depth_;
      loop_depth_ = 0;
      s->else_body = parse_block_body({"endfor"});
      loop_depth_ = saved;
    }
    next();  // endfor
    return s;
  }

  StmtPtr parse_set(int line) {
    auto s = make_stmt(StmtKind::kSet, line);
    s->target = parse_assign_target(true, nullptr);
    if (skip_op("=")) {
      s->expr = parse_tuple(true, {}, false);
      return s;
    }
    s->kind = StmtKind::kSetBlock;
    if (is_op("|")) s->expr = parse_filter(nullptr, false);
    s->body = parse_block_body({"endset"});
    next();
    return s;
  }

  StmtPtr parse_macro(int line) {
    auto s = make_stmt(StmtKind::kMacro, line);
    s->name = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      if (!s->params.empty()) expect_op(",");
      if (is_op(")")) break;
      MacroParam p;
      p.name = expect_name();
      if (skip_op("=")) {
        p.default_value = parse_expression(true);
      } else {
        for (const auto& prev : s->params) {
          if (prev.default_value) error("non-default argument follows default argument");
        }
      }
      s->params.push_back(std::move(p));
    }
    expect_op(")");
    int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_block_body({"endmacro"});
    loop_depth_ = saved;
    next();
    return s;
  }

  StmtPtr parse_filter_block(int line) {
    auto s = make_stmt(StmtKind::kFilterBlock, line);
    s->expr = parse_filter(nullptr, true);
    s->body = parse_block_body({"endfilter"});
    next();
    return s;
  }

  StmtPtr parse_with(int line) {
    auto s = make_stmt(StmtKind::kWith, line);
    while (cur().type != Tok::kBlockEnd) {
      if (!s->assigns.empty()) expect_op(",");
      Target t = parse_assign_target(false, nullptr);
      expect_op("=");
      s->assigns.emplace_back(std::move(t), parse_expression(true));
    }
    s->body = parse_block_body({"endwith"});
    next();
    return s;
  }

  // name | ns.attr (allow_ns) | a, b, ... (tuple unpacking)
  Target parse_assign_target(bool allow_ns, const char* end_name) {
    Target t;
    if (allow_ns && cur().type == Tok::kName && look().type == Tok::kOp && look().value == ".") {
      t.name = expect_name();
      next();
      t.attr = expect_name();
      return t;
    }
    bool paren = skip_op("(");
    while (true) {
      t.names.push_back(expect_name());
      if (!is_op(",")) break;
      t.is_tuple = true;
      next();
      if ((end_name && is_name(end_name)) || is_op("=") || is_op(")")) break;
    }
    if (paren) {
      t.is_tuple = true;
      expect_op(")");
    }
    if (!t.is_tuple) t.name = t.names[0];
    for (const auto& n : t.names) {
      if (n == "true" || n == "false" || n == "none" || n == "True" || n == "False" ||
          n == "None") {
        error("can't assign to '" + n + "'");
      }
    }
    return t;
  }

  // ---- expressions ----
  bool is_tuple_end(std::initializer_list<const char*> extra_end) const {
    if (cur().type == Tok::kVarEnd || cur().type == Tok::kBlockEnd || cur().type == Tok::kEof ||
        (cur().type == Tok::kOp && cur().value == ")")) {
      return true;
    }
    for (const char* n : extra_end) {
      if (is_name(n)) return true;
    }
    return false;
  }

  ExprPtr parse_tuple(bool with_condexpr, std::initializer_list<const char*> extra_end,
                      bool explicit_parens) {
    int line = cur().line;
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      args.push_back(parse_expression(with_condexpr));
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parens) error("Expected an expression, got " + describe(cur()));
    }
    auto e = node(ExprKind::kTuple, line);
    e->args = std::move(args);
    return e;
  }

  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard guard(this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    int line = cur().line;
    ExprPtr expr1 = parse_or();
    while (skip_name("if")) {
      auto e = node(ExprKind::kCondExpr, line);
      ExprPtr test = parse_or();
      ExprPtr other = skip_name("else") ? parse_condexpr() : nullptr;
      e->args.push_back(std::move(test));
      e->args.push_back(std::move(expr1));
      e->args.push_back(std::move(other));
      expr1 = std::move(e);
    }
    return expr1;
  }

  ExprPtr binary(const char* op, ExprPtr l, ExprPtr r, int line) {
    auto e = node(ExprKind::kBinary, line);
    e->name = op;
    e->args.push_back(std::move(l));
    e->args.push_back(std::move(r));
    return e;
  }

  ExprPtr parse_or() {
    int line = cur().line;
    ExprPtr left = parse_and();
    while (skip_name("or")) left = binary("or", std::move(left), parse_and(), line);
    return left;
  }

  ExprPtr parse_and() {
    int line = cur().line;
    ExprPtr left = parse_not();
    while (skip_name("and")) left = binary("and", std::move(left), parse_not(), line);
    return left;
  }

  ExprPtr parse_not() {
    int line = cur().line;
    if (skip_name("not")) {
      DepthGuard guard(this);
      auto e = node(ExprKind::kUnary, line);
      e->name = "not";
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    int line = cur().line;
    ExprPtr expr = parse_math1();
    auto e = node(ExprKind::kCompare, line);
    static const char* kOps[] = {"==", "!=", "<", "<=", ">", ">="};
    while (true) {
      std::string op;
      for (const char* o : kOps) {
        if (is_op(o)) op = o;
      }
      if (!op.empty()) {
        next();
      } else if (skip_name("in")) {
        op = "in";
      } else if (is_name("not") && look().type == Tok::kName && look().value == "in") {
        next();
        next();
        op = "notin";
      } else {
        break;
      }
      e->ops.push_back(op);
      e->args.push_back(parse_math1());
    }
    if (e->ops.empty()) return expr;
    e->args.insert(e->args.begin(), std::move(expr));
    return e;
  }

  ExprPtr parse_math1() {
    int line = cur().line;
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = cur().value;
      next();
      left = binary(op == "+" ? "+" : "-", std::move(left), parse_concat(), line);
    }
    return left;
  }

  ExprPtr parse_concat() {
    int line = cur().line;
    ExprPtr left = parse_math2();
    while (skip_op("~")) left = binary("~", std::move(left), parse_math2(), line);
    return left;
  }

  ExprPtr parse_math2() {
    int line = cur().line;
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().value;
      next();
      const char* o = op == "*" ? "*" : op == "/" ? "/" : op == "//" ? "//" : "%";
      left = binary(o, std::move(left), parse_pow(), line);
    }
    return left;
  }

  ExprPtr parse_pow() {
    int line = cur().line;
    ExprPtr left = parse_unary(true);
    while (skip_op("**")) left = binary("**", std::move(left), parse_unary(true), line);
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(this);
    int line = cur().line;
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      std::string op = cur().value;
      next();
      e = node(ExprKind::kUnary, line);
      e->name = op;
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& tok = cur();
    int line = tok.line;
    if (tok.type == Tok::kName) {
      const std::string& n = tok.value;
      ExprPtr e = node(ExprKind::kConst, line);
      if (n == "true" || n == "True") {
        e->value = Value::boolean(true);
      } else if (n == "false" || n == "False") {
        e->value = Value::boolean(false);
      } else if (n == "none" || n == "None") {
        e->value = Value::none();
      } else {
        e->kind = ExprKind::kName;
        e->name = n;
      }
      next();
      return e;
    }
    if (tok.type == Tok::kString) {
      std::string s;
      while (cur().type == Tok::kString) {
        s += cur().value;
        next();
      }
      ExprPtr e = node(ExprKind::kConst, line);
      e->value = Value::string(std::move(s));
      return e;
    }
    if (tok.type == Tok::kInt || tok.type == Tok::kFloat) {
      ExprPtr e = node(ExprKind::kConst, line);
      e->value = tok.type == Tok::kInt ? Value::integer(std::stoll(tok.value))
                                       : Value::number(std::strtod(tok.value.c_str(), nullptr));
      next();
      return e;
    }
    if (skip_op("(")) {
      ExprPtr e = parse_tuple(true, {}, true);
      expect_op(")");
      return e;
    }
    if (skip_op("[")) {
      ExprPtr e = node(ExprKind::kList, line);
      while (!is_op("]")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("]")) break;
        e->args.push_back(parse_expression(true));
      }
      expect_op("]");
      return e;
    }
    if (skip_op("{")) {
      ExprPtr e = node(ExprKind::kDict, line);
      while (!is_op("}")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("}")) break;
        e->args.push_back(parse_expression(true));
        expect_op(":");
        e->args.push_back(parse_expression(true));
      }
      expect_op("}");
      return e;
    }
    error("unexpected " + describe(tok));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        e = parse_filter(std::move(e), false);
      } else if (is_name("is")) {
        e = parse_test(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr base) {
    int line = cur().line;
    if (skip_op(".")) {
      if (cur().type == Tok::kName) {
        auto e = node(ExprKind::kGetattr, line);
        e->name = cur().value;
        e->args.push_back(std::move(base));
        next();
        return e;
      }
      if (cur().type != Tok::kInt) error("expected name or number");
      auto e = node(ExprKind::kGetitem, line);
      auto idx = node(ExprKind::kConst, line);
      idx->value = Value::integer(std::stoll(cur().value));
      next();
      e->args.push_back(std::move(base));
      e->args.push_back(std::move(idx));
      return e;
    }
    expect_op("[");
    std::vector<ExprPtr> subs;
    while (!is_op("]")) {
      if (!subs.empty()) expect_op(",");
      subs.push_back(parse_subscribed());
    }
    expect_op("]");
    // A bare slice from parse_subscribed has 3 args (start, stop, step) and takes the base
    // as its first; a complete slice expression (x[a[1:2]]) has 4 and is an ordinary index.
    auto bare_slice = [](const ExprPtr& p) {
      return p && p->kind == ExprKind::kSlice && p->args.size() == 3;
    };
    if (subs.size() > 1)
      for (const ExprPtr& p : subs)
        if (bare_slice(p)) error("a slice inside a tuple subscript is not supported");
    if (subs.size() == 1 && bare_slice(subs[0])) {
      subs[0]->args.insert(subs[0]->args.begin(), std::move(base));
      return std::move(subs[0]);
    }
    auto e = node(ExprKind::kGetitem, line);
    e->args.push_back(std::move(base));
    if (subs.size() == 1) {
      e->args.push_back(std::move(subs[0]));
    } else {
      auto tup = node(ExprKind::kTuple, line);
      tup->args = std::move(subs);
      e->args.push_back(std::move(tup));
    }
    return e;
  }

  ExprPtr parse_subscribed() {
    int line = cur().line;
    std::vector<ExprPtr> parts;
    if (skip_op(":")) {
      parts.push_back(nullptr);
    } else {
      ExprPtr first = parse_expression(true);
      if (!is_op(":")) return first;
      next();
      parts.push_back(std::move(first));
    }
    if (is_op(":")) {
      parts.push_back(nullptr);
    } else if (!is_op("]") && !is_op(",")) {
      parts.push_back(parse_expression(true));
    } else {
      parts.push_back(nullptr);
    }
    if (skip_op(":")) {
      parts.push_back(!is_op("]") && !is_op(",") ? parse_expression(true) : nullptr);
    } else {
      parts.push_back(nullptr);
    }
    auto e = node(ExprKind::kSlice, line);
    e->args = std::move(parts);
    return e;
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool need_comma = false;
    while (!is_op(")")) {
      if (need_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (skip_op("*")) {
        e.dyn_args = parse_expression(true);
      } else if (skip_op("**")) {
        e.dyn_kwargs = parse_expression(true);
      } else if (cur().type == Tok::kName && look().type == Tok::kOp && look().value == "=") {
        std::string key = cur().value;
        next();
        next();
        e.kwargs.emplace_back(key, parse_expression(true));
      } else {
        if (!e.kwargs.empty() || e.dyn_args || e.dyn_kwargs) {
          error("positional argument follows keyword argument");
        }
        e.args.push_back(parse_expression(true));
      }
      need_comma = true;
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = node(ExprKind::kCall, cur().line);
    e->args.push_back(std::move(callee));
    parse_call_args(*e);
    return e;
  }

  std::string dotted_name() {
    std::string name = expect_name();
    while (skip_op(".")) name += "." + expect_name();
    return name;
  }

  ExprPtr parse_filter(ExprPtr base, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) next();
      start_inline = false;
      auto e = node(ExprKind::kFilter, cur().line);
      e->name = dotted_name();
      e->args.push_back(std::move(base));
      if (is_op("(")) parse_call_args(*e);
      base = std::move(e);
    }
    return base;
  }

  ExprPtr parse_test(ExprPtr base) {
    auto e = node(ExprKind::kTest, cur().line);
    next();  // 'is'
    e->negated = skip_name("not");
    e->name = dotted_name();
    e->args.push_back(std::move(base));
    if (is_op("(")) {
      parse_call_args(*e);
    } else if ((cur().type == Tok::kName || cur().type == Tok::kString || cur().type == Tok::kInt ||
                cur().type == Tok::kFloat || is_op("(") || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) error("You cannot chain multiple tests with is");
      e->args.push_back(parse_postfix(parse_primary()));
    }
    return e;
  }

  std::vector<Token> t_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

// jinja2 rejects unknown filters and tests when it compiles a template, except inside
// if-statements and inline if-expressions ("soft" frames), where it fails only when run.
void check_names(const Expr* e, bool soft) {
  if (!e) return;
  if (e->kind == ExprKind::kCondExpr) soft = true;
  if (!soft && e->kind == ExprKind::kFilter && !is_known_filter(e->name)) {
    fail("template line ", e->line, ": No filter named '", e->name, "'.");
  }
  if (!soft && e->kind == ExprKind::kTest && !is_known_test(e->name)) {
    fail("template line ", e->line, ": No test named '", e->name, "'.");
  }
  for (const auto& a : e->args) check_names(a.get(), soft);
  for (const auto& kw : e->kwargs) check_names(kw.second.get(), soft);
  check_names(e->dyn_args.get(), soft);
  check_names(e->dyn_kwargs.get(), soft);
}

void check_names(const Body& body, bool soft) {
  for (const auto& s : body) {
    switch (s->kind) {
      case StmtKind::kIf:
        check_names(s->expr.get(), true);
        check_names(s->body, true);
        check_names(s->else_body, true);
        break;
      case StmtKind::kFor:
        check_names(s->expr.get(), soft);
        check_names(s->cond.get(), false);
        check_names(s->body, false);
        check_names(s->else_body, false);
        break;
      case StmtKind::kMacro:
        for (const auto& p : s->params) check_names(p.default_value.get(), false);
        check_names(s->body, false);
        break;
      case StmtKind::kWith:
        for (const auto& a : s->assigns) check_names(a.second.get(), soft);
        check_names(s->body, false);
        break;
      case StmtKind::kSetBlock:
      case StmtKind::kFilterBlock:
      case StmtKind::kBlock:
        check_names(s->expr.get(), soft);
        check_names(s->body, false);
        break;
      default:
        check_names(s->expr.get(), soft);
    }
  }
}

}  // namespace

Body parse_template(const std::string& source) {
  Body body = Parser(tokenize(source)).parse_all();
  check_names(body, false);
  return body;
}

}  // namespace jinx::jinja
