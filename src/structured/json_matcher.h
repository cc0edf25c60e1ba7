// Byte-level pushdown matcher for a JsonGrammar.
//
// A MatchState is a small set of stacks (alternatives still alive after anyOf forks); each
// stack holds one Frame per open value: the outermost value at the bottom, the value being
// written on top. step() feeds one byte to every stack; a stack that cannot take the byte is
// dropped, identical stacks are merged. A stack that has become empty has written one whole
// top-level value. The matcher itself is stateless and thread-safe: it only reads the grammar.
//
// Costs: a step copies the state's frames (16 bytes each, a few per stack) and does a switch
// on the top frame; the vocabulary walk in json_constraint.cpp does one step per trie node.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "structured/json_grammar.h"

namespace jinx {

struct Frame {
  uint32_t node = 0;  // GrammarNode id
  uint8_t phase = 0;  // per kind; 0 = value not started
  uint8_t aux = 0;    // string: UTF-8 bytes still due / hex digit index; number: digits
  uint16_t aux2 = 0;  // string: range of the next UTF-8 byte / surrogate state; bounded
                      // number: sign and whether its fraction has a non-zero digit
  uint32_t a = 0;     // string: code points (saturated); array: items; object: property;
                      // literal: trie node; bounded number: low 32 bits of its integer part
  uint32_t b = 0;     // object: key trie node; bounded number: high 32 bits; string under a
                      // pattern: its automaton's state
};
static_assert(sizeof(Frame) == 16, "Frame is hashed and compared as bytes");

struct MatchState {
  std::vector<Frame> frames;   // all stacks, back to back
  std::vector<uint32_t> ends;  // stack k is frames[ends[k-1], ends[k]); empty: dead
  bool dead() const { return ends.empty(); }
  // Bytes that identify the state (for mask caches).
  std::string key() const;
};

class JsonMatcher {
 public:
  static constexpr size_t kMaxDepth = 128;  // frames per stack; deeper values are rejected
  static constexpr size_t kMaxStacks = 32;  // alternatives kept; extra ones are dropped

  explicit JsonMatcher(const JsonGrammar& g) : g_(g) {}

  MatchState initial() const;
  // *out = the state after byte c (out must not be `in`); false when no stack takes c.
  bool step(const MatchState& in, uint8_t c, MatchState* out) const;
  // Some stack holds a whole top-level value (EOS may come now).
  bool complete(const MatchState& s) const;
  // Some byte can follow.
  bool can_continue(const MatchState& s) const;
  // Feeds all of `bytes`; false (s unchanged) if a byte is rejected.
  bool feed(MatchState* s, std::string_view bytes) const;
  // Every stack's top is a string at a character boundary: a token of plain string content
  // with at most *room code points is allowed there (kUnbounded: no maxLength).
  bool in_string_body(const MatchState& s, uint32_t* room) const;
  // Whether `doc` is one whole value this grammar can generate.
  bool accepts(std::string_view doc) const;

 private:
  enum class Action { kDead, kKeep, kPop, kPopRetry, kPushValue, kPushConsumed };
  struct Push {
    uint32_t node = 0;
    Frame frame;
  };

  void feed_stack(MatchState* st, size_t begin, int c) const;
  void push_value(MatchState* st, size_t begin, uint32_t node, int c) const;
  void commit(MatchState* st, size_t begin) const;
  Action step_frame(Frame& f, uint8_t c, Push* push) const;
  Action step_string(Frame& f, const GrammarNode& n, uint8_t c) const;
  static Action step_escape(Frame& f, uint8_t c);
  static bool count_char(Frame& f, const GrammarNode& n);
  static bool dfa_step(Frame& f, const GrammarNode& n, uint8_t c);
  Action step_number(Frame& f, const GrammarNode& n, bool integer, uint8_t c) const;
  static Action step_number_syntax(Frame& f, bool integer, uint8_t c);
  Action step_literal(Frame& f, uint8_t c) const;
  Action step_object(Frame& f, const GrammarNode& n, uint8_t c, Push* push) const;
  Action step_array(Frame& f, const GrammarNode& n, uint8_t c, Push* push) const;
  bool frame_completable(const Frame& f) const;

  const JsonGrammar& g_;
};

}  // namespace jinx
