// GBNF grammars (llama.cpp's grammar format) compiled for constrained decoding, and the
// pushdown matcher that walks them one byte at a time.
//
// Syntax (as llama.cpp's grammars/README.md describes it):
//   root ::= item ("," ws item)*       rules `name ::= alternatives`; the start rule is `root`
//   "text"  with escapes \n \t \r \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH
//   [a-z0-9_]  [^"\\]  character classes (ranges, negation, the same escapes); . any character
//   ( ... )  groups; |  alternatives; * + ?  {m} {m,} {m,n}  repetition; # comments
// Names are [A-Za-z0-9-_]+. A rule ends at the end of its line unless a group is open or the
// line ends in `|`, or the next line starts with `|`. Text is matched as UTF-8 code points:
// invalid UTF-8 (overlong forms, surrogates, stray continuation bytes) is never accepted.
//
// Refused with a jinx::Error naming the place: syntax errors, undefined rules, a missing
// root, left recursion (a rule that can reach itself before reading a character: the matcher
// could not expand it), repetition counts above kMaxRepeat and grammars above kMaxElements.
//
// Compiled form (as llama.cpp keeps it): every alternative is a run of elements ending in
// kEnd; repetitions are rewritten as generated rules (x* -> r ::= x r | ""), so a matcher
// stack never grows for a long repetition (a reference that ends its alternative is a tail
// call: the caller's frame is not kept).
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace jinx {

struct GbnfElem {
  enum Kind : uint8_t { kEnd, kChars, kRef };
  Kind kind = kEnd;
  uint32_t value = 0;  // kChars: char set index; kRef: rule index
};

// Code point ranges [lo, hi], sorted and merged; `negated` matches what they do not.
struct GbnfCharSet {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  bool negated = false;
  bool contains(uint32_t cp) const;
  // Whether some code point in [lo, hi] is in the set.
  bool intersects(uint32_t lo, uint32_t hi) const;
};

class GbnfGrammar {
 public:
  static constexpr uint32_t kMaxRepeat = 1000;       // m and n of {m,n}
  static constexpr size_t kMaxElements = 1u << 20;  // compiled size

  // Throws jinx::Error with the line and column of a syntax error, or the rule at fault.
  static std::shared_ptr<const GbnfGrammar> parse(std::string_view text, std::string_view root = "root");
  // One of the given strings exactly (vLLM's guided_choice); throws on an empty list.
  static std::shared_ptr<const GbnfGrammar> choice(const std::vector<std::string>& options);
  // A GBNF string literal for `s` (quotes and escapes added), as the parser reads it back.
  static std::string quote(std::string_view s);

  const std::vector<GbnfElem>& elems() const { return elems_; }
  const GbnfCharSet& chars(uint32_t i) const { return sets_[i]; }
  const std::vector<uint32_t>& alternatives(uint32_t rule) const { return rules_[rule].alts; }
  const std::string& rule_name(uint32_t rule) const { return rules_[rule].name; }
  size_t n_rules() const { return rules_.size(); }
  uint32_t root() const { return root_; }
  // Some repetition of a possibly empty item loops back without reading, or some rule has two
  // ways to read nothing (see gbnf.cpp): the matcher then expands each stack once.
  bool cycle_guard() const { return cycle_guard_; }

 private:
  friend class GbnfParser;
  struct Rule {
    std::string name;
    std::vector<uint32_t> alts;  // start index of each alternative in elems_
    bool defined = false;
  };
  void check_left_recursion();

  std::vector<GbnfElem> elems_;
  std::vector<GbnfCharSet> sets_;
  std::vector<Rule> rules_;
  uint32_t root_ = 0;
  bool cycle_guard_ = false;
};

// A matcher state: the partial UTF-8 character read so far and a set of stacks of element
// positions (the next element to match in each open alternative, innermost on top). Every
// stack's top is a kChars element; an empty stack means the input so far is a whole sentence.
struct GbnfState {
  std::vector<uint32_t> frames;  // all stacks back to back
  std::vector<uint32_t> ends;    // stack k is frames[ends[k-1], ends[k])
  std::vector<uint64_t> hashes;  // of each stack (deduplication; not part of key())
  uint32_t cp = 0;               // bits of the partial character
  uint8_t need = 0;              // continuation bytes still due
  uint8_t len = 0;               // bytes of the partial character read
  bool dead() const { return ends.empty(); }
  std::string key() const;  // identifies the state (mask caches)
};

class GbnfMatcher {
 public:
  static constexpr size_t kMaxDepth = 256;   // frames per stack; deeper parses are dropped
  static constexpr size_t kMaxStacks = 64;  // ambiguity kept; extra stacks are dropped

  explicit GbnfMatcher(const GbnfGrammar& g) : g_(g) {}

  GbnfState initial() const;
  // *out = the state after byte c (out must not be `in`); false when the byte is rejected.
  bool step(const GbnfState& in, uint8_t c, GbnfState* out) const;
  bool feed(GbnfState* s, std::string_view bytes) const;
  // The input so far is a whole sentence of the grammar (EOS may come now).
  bool complete(const GbnfState& s) const;
  // Some character can follow.
  bool can_continue(const GbnfState& s) const;
  bool accepts(std::string_view text) const;

 private:
  void expand(std::vector<uint32_t>* stack, GbnfState* out) const;
  void expand_from(std::vector<uint32_t>* stack, GbnfState* out, int depth) const;
  static constexpr int kMaxRecursion = 2000;
  // Expansion steps per byte (step()); past it the remaining parses are dropped. Only
  // grammars built to be slow get near it (thousands of nested nullable repetitions).
  static constexpr int64_t kMaxExpandWork = 1 << 20;
  mutable int64_t work_ = 0;
  void add_stack(const std::vector<uint32_t>& stack, GbnfState* out) const;
  void advance(const GbnfState& in, uint32_t cp, GbnfState* out) const;
  bool filter(const GbnfState& in, uint32_t lo, uint32_t hi, GbnfState* out) const;

  const GbnfGrammar& g_;
  mutable std::vector<uint32_t> scratch_;
  mutable std::set<std::vector<uint32_t>> seen_;  // cycle_guard(): stacks met at references
  mutable std::vector<std::vector<uint32_t>> pending_;  // set aside at kMaxRecursion
};

}  // namespace jinx
