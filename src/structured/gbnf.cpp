#include "structured/gbnf.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <unordered_map>

#include "core/check.h"
#include "structured/scan.h"

namespace jinx {

namespace {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

}  // namespace

bool GbnfCharSet::contains(uint32_t cp) const {
  // ranges are few (a class rarely has more than a handful): a linear scan.
  bool in = false;
  for (const auto& [lo, hi] : ranges) {
    if (cp < lo) break;
    if (cp <= hi) {
      in = true;
      break;
    }
  }
  return in != negated;
}

bool GbnfCharSet::intersects(uint32_t lo, uint32_t hi) const {
  if (!negated) {
    for (const auto& [a, b] : ranges)
      if (a <= hi && b >= lo) return true;
    return false;
  }
  // Negated: some point of [lo, hi] lies outside every range (they are sorted and merged).
  uint32_t next = lo;
  for (const auto& [a, b] : ranges) {
    if (b < next) continue;
    if (a > next) return true;
    if (b >= hi) return false;
    next = b + 1;
  }
  return next <= hi;
}

// ---------------------------------------------------------------------------------------------
// Parser

class GbnfParser {
 public:
  explicit GbnfParser(std::string_view text) : s_(text) {}

  std::shared_ptr<GbnfGrammar> run(std::string_view root) {
    g_ = std::make_shared<GbnfGrammar>();
    skip_space(true);
    while (pos_ < s_.size()) {
      parse_rule();
      skip_space(true);
    }
    if (g_->rules_.empty()) fail("the grammar has no rules");
    for (const auto& r : g_->rules_)
      if (!r.defined) fail(str("grammar: undefined rule '", r.name, "'"));
    auto it = ids_.find(std::string(root));
    if (it == ids_.end()) fail(str("grammar: no '", root, "' rule (the start rule)"));
    g_->root_ = it->second;
    g_->check_left_recursion();
    if (GbnfMatcher(*g_).initial().dead())
      fail("grammar: the start rule matches nothing (every alternative refers to itself)");
    return std::move(g_);
  }

 private:
  using Seq = std::vector<GbnfElem>;
  using Alts = std::vector<Seq>;

  [[noreturn]] void error(std::string_view what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    fail(str("grammar: ", what, " at line ", line, ", column ", col));
  }

  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }

  // Spaces, tabs and comments; newlines too where `newlines` (inside groups, between rules).
  void skip_space(bool newlines) {
    while (!at_end()) {
      const char c = s_[pos_];
      if (c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r'))) {
        ++pos_;
      } else if (c == '#') {
        while (!at_end() && s_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  // At a line end outside groups: does the rule go on (a line that starts with '|')?
  bool continues_on_next_line() {
    const size_t save = pos_;
    skip_space(true);
    if (peek() == '|') return true;
    pos_ = save;
    return false;
  }

  std::string parse_name() {
    const size_t start = pos_;
    while (!at_end() && is_name_char(s_[pos_])) ++pos_;
    if (pos_ == start) error("expected a rule name");
    return std::string(s_.substr(start, pos_ - start));
  }

  uint32_t rule_id(const std::string& name) {
    auto [it, added] = ids_.emplace(name, static_cast<uint32_t>(g_->rules_.size()));
    if (added) g_->rules_.push_back({name, {}, false});
    return it->second;
  }

  uint32_t new_rule(const std::string& base) {
    for (;;) {
      std::string name = str(base, "-", ++generated_);
      if (!ids_.count(name)) {
        const uint32_t id = rule_id(name);
        g_->rules_[id].defined = true;
        return id;
      }
    }
  }

  void define(uint32_t rule, const Alts& alts) {
    for (const Seq& seq : alts) {
      if (g_->elems_.size() + seq.size() + 1 > GbnfGrammar::kMaxElements)
        fail(str("grammar: more than ", GbnfGrammar::kMaxElements, " elements once repetitions are expanded"));
      g_->rules_[rule].alts.push_back(static_cast<uint32_t>(g_->elems_.size()));
      g_->elems_.insert(g_->elems_.end(), seq.begin(), seq.end());
      g_->elems_.push_back({GbnfElem::kEnd, 0});
    }
  }

  void parse_rule() {
    const std::string name = parse_name();
    skip_space(false);
    if (s_.substr(pos_, 3) != "::=") error(str("expected '::=' after '", name, "'"));
    pos_ += 3;
    skip_space(true);
    const uint32_t id = rule_id(name);
    if (g_->rules_[id].defined) error(str("rule '", name, "' is defined twice"));
    g_->rules_[id].defined = true;
    current_ = name;
    const Alts alts = parse_alternatives(0);
    define(id, alts);
    skip_space(false);
    if (!at_end() && peek() != '\n' && peek() != '\r') error("expected the end of the rule");
  }

  Alts parse_alternatives(int depth) {
    Alts alts;
    alts.push_back(parse_sequence(depth));
    for (;;) {
      skip_space(depth > 0);
      if (peek() != '|' && !(depth == 0 && (peek() == '\n' || peek() == '\r') && continues_on_next_line()))
        break;
      ++pos_;  // '|'
      skip_space(true);
      alts.push_back(parse_sequence(depth));
    }
    return alts;
  }

  Seq parse_sequence(int depth) {
    Seq seq;
    size_t last = 0;  // where the last item starts (what a repetition applies to)
    bool have_item = false;
    for (;;) {
      skip_space(depth > 0);
      if (at_end()) break;
      const char c = peek();
      if (c == '"') {
        ++pos_;
        last = seq.size();
        while (peek() != '"') {
          if (at_end() || peek() == '\n') error("unterminated string literal");
          const uint32_t cp = parse_char();
          seq.push_back({GbnfElem::kChars, add_set({{{cp, cp}}, false})});
        }
        ++pos_;
        have_item = seq.size() > last;
        if (!have_item) {  // "" matches the empty string: nothing to add, nothing to repeat
          if (is_repeat_op(peek())) error("repetition of an empty string");
        }
      } else if (c == '[') {
        ++pos_;
        last = seq.size();
        seq.push_back({GbnfElem::kChars, parse_class()});
        have_item = true;
      } else if (c == '.') {
        ++pos_;
        last = seq.size();
        seq.push_back({GbnfElem::kChars, add_set({{}, true})});
        have_item = true;
      } else if (c == '(') {
        ++pos_;
        if (depth >= 64) error("groups nested too deeply");
        skip_space(true);
        const Alts inner = parse_alternatives(depth + 1);
        skip_space(true);
        if (peek() != ')') error("expected ')'");
        ++pos_;
        const uint32_t r = new_rule(current_);
        define(r, inner);
        last = seq.size();
        seq.push_back({GbnfElem::kRef, r});
        have_item = true;
      } else if (is_name_char(c)) {
        const size_t save = pos_;
        const std::string name = parse_name();
        // `name ::=` starts the next rule (a rule without a trailing newline before it).
        skip_space(false);
        if (s_.substr(pos_, 3) == "::=") {
          if (depth > 0) error("expected ')'");
          pos_ = save;
          break;
        }
        pos_ = save + name.size();
        last = seq.size();
        seq.push_back({GbnfElem::kRef, rule_id(name)});
        have_item = true;
      } else if (is_repeat_op(c)) {
        if (!have_item) error(str("'", c, "' has nothing to repeat"));
        apply_repeat(&seq, last);
        have_item = false;  // x** is not allowed
      } else {
        break;  // '|', ')', a newline, or something the caller reports
      }
    }
    if (depth > 0 || at_end()) return seq;
    const char c = peek();
    if (c != '|' && c != '\n' && c != '\r' && c != ')')
      error(str("unexpected '", c, "'"));
    if (c == ')') error("unbalanced ')'");
    return seq;
  }

  static bool is_repeat_op(char c) { return c == '*' || c == '+' || c == '?' || c == '{'; }

  uint32_t parse_count() {
    const size_t start = pos_;
    uint64_t v = 0;
    while (!at_end() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      v = v * 10 + static_cast<uint64_t>(s_[pos_] - '0');
      if (v > GbnfGrammar::kMaxRepeat) error(str("repetition count above ", GbnfGrammar::kMaxRepeat));
      ++pos_;
    }
    if (pos_ == start) error("expected a number in {m,n}");
    return static_cast<uint32_t>(v);
  }

  // Rewrites seq[last, end) (one item) as its repetition.
  void apply_repeat(Seq* seq, size_t last) {
    const Seq item(seq->begin() + static_cast<std::ptrdiff_t>(last), seq->end());
    seq->resize(last);
    uint32_t min = 0, max = 0;  // max == UINT32_MAX: unbounded
    constexpr uint32_t kInf = UINT32_MAX;
    const char op = s_[pos_++];
    if (op == '*') {
      max = kInf;
    } else if (op == '+') {
      min = 1;
      max = kInf;
    } else if (op == '?') {
      max = 1;
    } else {  // {m}, {m,}, {m,n}
      skip_space(false);
      min = peek() == ',' ? 0 : parse_count();  // {,n}: at most n
      skip_space(false);
      max = min;
      if (peek() == ',') {
        ++pos_;
        skip_space(false);
        max = peek() == '}' ? kInf : parse_count();
        skip_space(false);
      }
      if (peek() != '}') error("expected '}'");
      ++pos_;
      if (max < min) error("{m,n} with n < m");
    }
    if (static_cast<uint64_t>(item.size()) * min > GbnfGrammar::kMaxElements)
      fail(str("grammar: more than ", GbnfGrammar::kMaxElements, " elements once repetitions are expanded"));
    for (uint32_t i = 0; i < min; ++i) seq->insert(seq->end(), item.begin(), item.end());
    if (max == kInf) {  // r ::= item r | ""
      const uint32_t r = new_rule(current_);
      Seq loop = item;
      loop.push_back({GbnfElem::kRef, r});
      define(r, {loop, {}});
      seq->push_back({GbnfElem::kRef, r});
    } else if (max > min) {  // r1 ::= item r2 | "" ... rk ::= item | ""
      uint32_t inner = 0;
      bool have_inner = false;
      for (uint32_t k = 0; k < max - min; ++k) {
        const uint32_t r = new_rule(current_);
        Seq body = item;
        if (have_inner) body.push_back({GbnfElem::kRef, inner});
        define(r, {body, {}});
        inner = r;
        have_inner = true;
      }
      seq->push_back({GbnfElem::kRef, inner});
    }
  }

  uint32_t hex(int digits) {
    const auto v = scan::hex(s_, &pos_, digits);
    if (!v) error(str("expected ", digits, " hex digits"));
    return *v;
  }

  // One character of a literal or class: an escape or one UTF-8 code point.
  uint32_t parse_char() {
    uint32_t cp = 0;
    const auto c = static_cast<unsigned char>(s_[pos_]);
    if (c == '\\') {
      ++pos_;
      if (at_end()) error("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case 'n': cp = '\n'; break;
        case 't': cp = '\t'; break;
        case 'r': cp = '\r'; break;
        case 'x': cp = hex(2); break;
        case 'u': cp = hex(4); break;
        case 'U': cp = hex(8); break;
        default:
          if (std::strchr("\\\"[]-^/.'", e) == nullptr || e == '\0') error(str("unknown escape '\\", e, "'"));
          cp = static_cast<unsigned char>(e);
      }
      if (!scan::is_scalar(cp)) error("escape is not a Unicode scalar value");
      return cp;
    }
    const auto u = scan::utf8(s_, &pos_);  // the grammar text itself
    if (!u) error("invalid UTF-8 in the grammar");
    return *u;
  }

  uint32_t parse_class() {
    GbnfCharSet set;
    if (peek() == '^') {
      set.negated = true;
      ++pos_;
    }
    while (peek() != ']') {
      if (at_end()) error("unterminated character class");
      const uint32_t lo = parse_char();
      uint32_t hi = lo;
      if (peek() == '-' && pos_ + 1 < s_.size() && s_[pos_ + 1] != ']') {
        ++pos_;
        hi = parse_char();
        if (hi < lo) error("character range out of order");
      }
      set.ranges.emplace_back(lo, hi);
    }
    ++pos_;
    return add_set(std::move(set));
  }

  uint32_t add_set(GbnfCharSet set) {
    auto& r = set.ranges;
    std::sort(r.begin(), r.end());
    std::vector<std::pair<uint32_t, uint32_t>> merged;
    for (const auto& x : r) {
      if (!merged.empty() && x.first <= merged.back().second + 1) {
        merged.back().second = std::max(merged.back().second, x.second);
      } else {
        merged.push_back(x);
      }
    }
    r = std::move(merged);
    g_->sets_.push_back(std::move(set));
    return static_cast<uint32_t>(g_->sets_.size() - 1);
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::shared_ptr<GbnfGrammar> g_;
  std::unordered_map<std::string, uint32_t> ids_;
  std::string current_;  // the rule being parsed (names its generated rules)
  uint32_t generated_ = 0;
};

std::shared_ptr<const GbnfGrammar> GbnfGrammar::parse(std::string_view text, std::string_view root) {
  return GbnfParser(text).run(root);
}

std::string GbnfGrammar::quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);  // UTF-8 passes through; the parser validates it
    }
  }
  out += '"';
  return out;
}

std::shared_ptr<const GbnfGrammar> GbnfGrammar::choice(const std::vector<std::string>& options) {
  if (options.empty()) fail("a choice needs at least one option");
  std::string text = "root ::= ";
  for (size_t i = 0; i < options.size(); ++i) {
    if (i) text += " | ";
    text += quote(options[i]);
  }
  return parse(text);
}

// A rule that can reach itself through alternatives' first elements (after nullable ones)
// would make the matcher's expansion loop forever. Where every reference on such a cycle ends
// its alternative (a repetition of something that can be empty: ("a"?)*), the stack does
// not grow around it and the matcher stops when it meets the same stack again
// (cycle_guard_); any other cycle grows the stack without reading a character and is refused,
// as llama.cpp refuses left recursion.
void GbnfGrammar::check_left_recursion() {
  const size_t n = rules_.size();
  std::vector<uint8_t> nullable(n, 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (uint32_t a : rules_[r].alts) {
        bool all = true;
        for (uint32_t i = a; elems_[i].kind != GbnfElem::kEnd; ++i) {
          if (elems_[i].kind == GbnfElem::kChars || !nullable[elems_[i].value]) {
            all = false;
            break;
          }
        }
        if (all) {
          nullable[r] = 1;
          changed = true;
          break;
        }
      }
    }
  }
  struct Edge {
    uint32_t to;
    bool tail;  // the reference ends its alternative: nothing of the caller stays
  };
  std::vector<std::vector<Edge>> left(n);  // rules that can come first
  for (size_t r = 0; r < n; ++r) {
    for (uint32_t a : rules_[r].alts) {
      for (uint32_t i = a; elems_[i].kind == GbnfElem::kRef; ++i) {
        left[r].push_back({elems_[i].value, elems_[i + 1].kind == GbnfElem::kEnd});
        if (!nullable[elems_[i].value]) break;
      }
    }
  }
  // Strongly connected components (Tarjan, iterative); an edge inside one lies on a cycle.
  std::vector<int64_t> index(n, -1), low(n, 0);
  std::vector<uint32_t> comp(n, 0), stack;
  std::vector<uint8_t> on_stack(n, 0);
  std::vector<std::pair<uint32_t, size_t>> path;
  int64_t counter = 0;
  uint32_t n_comps = 0;
  for (uint32_t start = 0; start < n; ++start) {
    if (index[start] >= 0) continue;
    path.push_back({start, 0});
    index[start] = low[start] = counter++;
    stack.push_back(start);
    on_stack[start] = 1;
    while (!path.empty()) {
      auto& [r, next] = path.back();
      if (next < left[r].size()) {
        const uint32_t to = left[r][next++].to;
        if (index[to] < 0) {
          index[to] = low[to] = counter++;
          stack.push_back(to);
          on_stack[to] = 1;
          path.push_back({to, 0});
        } else if (on_stack[to]) {
          low[r] = std::min(low[r], index[to]);
        }
        continue;
      }
      const uint32_t done = r;
      path.pop_back();
      if (!path.empty()) low[path.back().first] = std::min(low[path.back().first], low[done]);
      if (low[done] == index[done]) {
        for (;;) {
          const uint32_t x = stack.back();
          stack.pop_back();
          on_stack[x] = 0;
          comp[x] = n_comps;
          if (x == done) break;
        }
        ++n_comps;
      }
    }
  }
  // Several ways to read nothing (two nullable alternatives of one rule, e.g. ("" | "")) make
  // the number of expansion paths grow exponentially with nesting, though they meet again at
  // the same stacks: the guard expands each stack once.
  for (size_t r = 0; r < n && !cycle_guard_; ++r) {
    int n_nullable = 0;
    for (uint32_t a : rules_[r].alts) {
      bool all = true;
      for (uint32_t i = a; all && elems_[i].kind != GbnfElem::kEnd; ++i)
        all = elems_[i].kind == GbnfElem::kRef && nullable[elems_[i].value];
      n_nullable += all;
    }
    cycle_guard_ = n_nullable >= 2;
  }
  for (size_t r = 0; r < n; ++r) {
    for (const Edge& e : left[r]) {
      if (comp[e.to] != comp[r]) continue;  // not on a cycle
      if (!e.tail)
        fail(str("grammar: left recursion in rule '", rules_[e.to].name,
                 "' (it can reach itself before reading a character)"));
      cycle_guard_ = true;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Matcher

std::string GbnfState::key() const {
  std::string k;
  k.resize(3 + 4 + (frames.size() + ends.size()) * 4);
  k[0] = static_cast<char>(need);
  k[1] = static_cast<char>(len);
  k[2] = static_cast<char>(ends.size() & 0xFF);
  std::memcpy(k.data() + 3, &cp, 4);
  if (!frames.empty()) std::memcpy(k.data() + 7, frames.data(), frames.size() * 4);
  if (!ends.empty()) std::memcpy(k.data() + 7 + frames.size() * 4, ends.data(), ends.size() * 4);
  return k;
}

void GbnfMatcher::add_stack(const std::vector<uint32_t>& stack, GbnfState* out) const {
  // Identical stacks (two parses that reached the same place) are kept once; their hashes
  // are compared first, so an ambiguous grammar's hundreds of deep stacks stay cheap.
  uint64_t h = 0xcbf29ce484222325ull ^ stack.size();
  for (uint32_t v : stack) h = (h ^ v) * 0x100000001b3ull;
  for (size_t k = 0; k < out->hashes.size(); ++k) {
    if (out->hashes[k] != h) continue;
    const uint32_t begin = k ? out->ends[k - 1] : 0, end = out->ends[k];
    if (end - begin == stack.size() &&
        std::equal(stack.begin(), stack.end(), out->frames.begin() + begin))
      return;
  }
  if (out->ends.size() >= kMaxStacks) return;
  out->frames.insert(out->frames.end(), stack.begin(), stack.end());
  out->ends.push_back(static_cast<uint32_t>(out->frames.size()));
  out->hashes.push_back(h);
}

// Turns `stack` (its top the next element of some alternative) into stacks whose tops are
// character elements, by following references and ends of alternatives; adds them to *out.
// Leaves *stack as it found it.
// The recursion goes one level per element passed over without reading (ends of alternatives,
// nullable references); past kMaxRecursion levels the stack is set aside and expanded again
// from a fresh recursion, so a grammar of long nullable chains cannot overflow the C++ stack.
void GbnfMatcher::expand(std::vector<uint32_t>* stack, GbnfState* out) const {
  if (g_.cycle_guard()) seen_.clear();
  expand_from(stack, out, 0);
  while (!pending_.empty()) {
    std::vector<uint32_t> st = std::move(pending_.back());
    pending_.pop_back();
    expand_from(&st, out, 0);
  }
}

void GbnfMatcher::expand_from(std::vector<uint32_t>* stack, GbnfState* out, int depth) const {
  // Bounds on pathological grammars: the stacks kept are full, or this step has worked enough.
  if (out->ends.size() >= kMaxStacks || ++work_ > kMaxExpandWork) return;
  if (depth >= kMaxRecursion) {
    pending_.push_back(*stack);
    return;
  }
  if (stack->empty()) {
    add_stack(*stack, out);
    return;
  }
  const uint32_t pos = stack->back();
  const GbnfElem& e = g_.elems()[pos];
  if (e.kind == GbnfElem::kChars) {
    add_stack(*stack, out);
    return;
  }
  if (e.kind == GbnfElem::kRef && g_.cycle_guard() && !seen_.insert(*stack).second) return;
  stack->pop_back();
  if (e.kind == GbnfElem::kEnd) {  // the alternative is done: back to its caller
    expand_from(stack, out, depth + 1);
  } else {
    // A reference: the caller's next element stays below (unless the reference ends its
    // alternative: a tail call keeps nothing), each alternative of the rule goes on top.
    const bool keep = g_.elems()[pos + 1].kind != GbnfElem::kEnd;
    if (keep) stack->push_back(pos + 1);
    if (stack->size() < kMaxDepth) {
      for (uint32_t alt : g_.alternatives(e.value)) {
        stack->push_back(alt);
        expand_from(stack, out, depth + 1);
        stack->pop_back();
      }
    }
    if (keep) stack->pop_back();
  }
  stack->push_back(pos);
}

GbnfState GbnfMatcher::initial() const {
  work_ = 0;
  GbnfState s;
  std::vector<uint32_t> stack;
  for (uint32_t alt : g_.alternatives(g_.root())) {
    stack.assign(1, alt);
    expand(&stack, &s);
  }
  return s;
}

void GbnfMatcher::advance(const GbnfState& in, uint32_t cp, GbnfState* out) const {
  uint32_t begin = 0;
  for (uint32_t end : in.ends) {
    if (end > begin) {
      const uint32_t top = in.frames[end - 1];
      if (g_.chars(g_.elems()[top].value).contains(cp)) {
        scratch_.assign(in.frames.begin() + begin, in.frames.begin() + end - 1);
        scratch_.push_back(top + 1);
        expand(&scratch_, out);
      }
    }
    begin = end;
  }
}

// Keeps the stacks whose next character can be in [lo, hi] (a partial UTF-8 character).
bool GbnfMatcher::filter(const GbnfState& in, uint32_t lo, uint32_t hi, GbnfState* out) const {
  uint32_t begin = 0;
  for (size_t k = 0; k < in.ends.size(); ++k) {
    const uint32_t end = in.ends[k];
    if (end > begin && g_.chars(g_.elems()[in.frames[end - 1]].value).intersects(lo, hi)) {
      out->frames.insert(out->frames.end(), in.frames.begin() + begin, in.frames.begin() + end);
      out->ends.push_back(static_cast<uint32_t>(out->frames.size()));
      out->hashes.push_back(in.hashes[k]);
    }
    begin = end;
  }
  return !out->dead();
}

bool GbnfMatcher::step(const GbnfState& in, uint8_t c, GbnfState* out) const {
  work_ = 0;
  out->frames.clear();
  out->ends.clear();
  out->hashes.clear();
  out->cp = 0;
  out->need = 0;
  out->len = 0;
  uint32_t cp;
  uint8_t need, len;
  if (in.need == 0) {
    if (c < 0x80) {
      advance(in, c, out);
      return !out->dead();
    }
    if (c >= 0xC2 && c <= 0xDF) {
      cp = c & 0x1F, need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      cp = c & 0x0F, need = 2;
    } else if (c >= 0xF0 && c <= 0xF4) {
      cp = c & 0x07, need = 3;
    } else {
      return false;  // a continuation byte, or never valid in UTF-8
    }
    len = 1;
  } else {
    if ((c & 0xC0) != 0x80) return false;
    cp = (in.cp << 6) | (c & 0x3F);
    need = static_cast<uint8_t>(in.need - 1);
    len = static_cast<uint8_t>(in.len + 1);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};  // by total length
  const int total = len + need;
  if (need == 0) {
    if (cp < kMin[total] || cp > kMaxCodePoint || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    advance(in, cp, out);
    return !out->dead();
  }
  // The characters this prefix can still become: refuses overlong forms, surrogates and
  // values above U+10FFFF at their first wrong byte.
  const uint32_t shift = 6u * need;
  const uint32_t lo = std::max(cp << shift, kMin[total]);
  const uint32_t hi = std::min((cp << shift) | ((1u << shift) - 1), kMaxCodePoint);
  if (lo > hi || (lo >= 0xD800 && hi <= 0xDFFF)) return false;
  if (!filter(in, lo, hi, out)) return false;
  out->cp = cp;
  out->need = need;
  out->len = len;
  return true;
}

bool GbnfMatcher::feed(GbnfState* s, std::string_view bytes) const {
  GbnfState cur = *s, next;
  for (char ch : bytes) {
    if (!step(cur, static_cast<uint8_t>(ch), &next)) return false;
    std::swap(cur, next);
  }
  *s = std::move(cur);
  return true;
}

bool GbnfMatcher::complete(const GbnfState& s) const {
  if (s.need) return false;
  uint32_t begin = 0;
  for (uint32_t end : s.ends) {
    if (end == begin) return true;
    begin = end;
  }
  return false;
}

bool GbnfMatcher::can_continue(const GbnfState& s) const {
  if (s.need) return true;
  uint32_t begin = 0;
  for (uint32_t end : s.ends) {
    if (end > begin) return true;
    begin = end;
  }
  return false;
}

bool GbnfMatcher::accepts(std::string_view text) const {
  GbnfState s = initial();
  return feed(&s, text) && complete(s);
}

}  // namespace jinx
