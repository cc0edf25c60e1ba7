// Syntax tree of a parsed template: expressions and statements, each with its source line.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace jinx::jinja {

enum class ExprKind : uint8_t {
  kConst,     // value
  kName,      // name
  kGetattr,   // args[0].name
  kGetitem,   // args[0][args[1]]
  kSlice,     // args[0][args[1]:args[2]:args[3]] (null parts allowed)
  kCall,      // args[0](args[1..], kwargs, dyn_args, dyn_kwargs)
  kFilter,    // args[0] | name(args[1..], kwargs); args[0] null inside {% filter %}
  kTest,      // args[0] is [not] name(args[1..], kwargs)
  kUnary,     // name: "-", "+", "not"; args[0]
  kBinary,    // name: "+", "-", "*", "/", "//", "%", "**", "~", "and", "or"; args[0], args[1]
  kCompare,   // args[0] ops[k] args[k+1]; ops: "==", "!=", "<", "<=", ">", ">=", "in", "notin"
  kCondExpr,  // args[1] if args[0] else args[2] (args[2] may be null)
  kList,      // [args...]
  kTuple,     // (args...)
  kDict,      // {args[2k]: args[2k+1]}
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  int line = 0;
  Value value;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  ExprPtr dyn_args;
  ExprPtr dyn_kwargs;
  std::vector<std::string> ops;
};

enum class StmtKind : uint8_t {
  kData,         // text
  kOutput,       // {{ expr }}
  kIf,           // if expr: body, else: else_body (elif becomes a nested if in else_body)
  kFor,          // for target in expr [if cond]: body else: else_body
  kSet,          // set target = expr
  kSetBlock,     // set target [| filters] %} body {% endset
  kMacro,        // macro name(params=defaults): body
  kFilterBlock,  // filter expr(chain with null base) %} body
  kWith,         // with targets = values: body
  kBreak,
  kContinue,
  kBlock,  // plain body (generation tag, raw scope)
};

// Assignment target: a name, a namespace attribute (ns.attr) or a tuple of names.
struct Target {
  std::string name;                // plain name, or the namespace variable for ns.attr
  std::string attr;                // non-empty for ns.attr
  std::vector<std::string> names;  // tuple unpacking: `a, b`
  bool is_tuple = false;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null when required
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;  // kData
  ExprPtr expr;      // output / condition / iterable / value / filter chain
  ExprPtr cond;      // for-loop filter
  Target target;
  Body body;
  Body else_body;
  bool recursive = false;
  std::string name;  // macro name
  std::vector<MacroParam> params;
  std::vector<std::pair<Target, ExprPtr>> assigns;  // with
};

}  // namespace jinx::jinja
