#include "structured/json_matcher.h"

#include <algorithm>
#include <cstring>

namespace jinx {

namespace {

// String phases.
enum : uint8_t { kSOpen, kSBody, kSEsc, kSHex, kSCont, kSLowBs, kSLowU, kSLowHex };
// Number phases.
enum : uint8_t { kNStart, kNMinus, kNZero, kNInt, kNDot, kNFrac, kNExpMark, kNExpSign, kNExp };
// Object phases.
enum : uint8_t {
  kOOpen,
  kOFirst,  // after '{'
  kOKey,    // inside a listed key (b = key trie node)
  kOColon,  // after the key (a = property index)
  kOAfterColon,
  kOValue,       // after ": "
  kOAfterValue,  // a = next property index
  kOAfterComma,
  kOKeyStart,  // after ", "
};
// Array phases.
enum : uint8_t { kAOpen, kAFirst, kAAfterValue, kAAfterComma, kAValue };

// UTF-8 lead byte -> (continuation bytes due, range code of the first continuation byte).
// Range codes: 0 80-BF, 1 A0-BF (after E0), 2 80-9F (after ED), 3 90-BF (F0), 4 80-8F (F4).
bool utf8_lead(uint8_t c, uint8_t* need, uint16_t* range) {
  if (c >= 0xC2 && c <= 0xDF)
    *need = 1, *range = 0;
  else if (c == 0xE0)
    *need = 2, *range = 1;
  else if (c == 0xED)
    *need = 2, *range = 2;
  else if (c >= 0xE1 && c <= 0xEF)
    *need = 2, *range = 0;
  else if (c == 0xF0)
    *need = 3, *range = 3;
  else if (c >= 0xF1 && c <= 0xF3)
    *need = 3, *range = 0;
  else if (c == 0xF4)
    *need = 3, *range = 4;
  else
    return false;
  return true;
}

bool utf8_cont_ok(uint8_t c, uint16_t range) {
  static constexpr uint8_t kLo[] = {0x80, 0xA0, 0x80, 0x90, 0x80};
  static constexpr uint8_t kHi[] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};
  return c >= kLo[range] && c <= kHi[range];
}

int hex_value(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_digit(uint8_t c) {
  return c >= '0' && c <= '9';
}


// ---- Bounded numbers ----
//
// A bounded number's frame carries its sign (aux2 bit 0), whether its fraction has a non-zero
// digit so far (aux2 bit 1) and its integer part m (a, b). With integer bounds, that is all
// that decides whether the value is in range: s * (m + f) with f in [0, 1) is m exactly when
// the fraction is all zeros, else strictly between m and m + 1. A byte is allowed only if some
// completion stays in range, so generation never walks into a dead end.
constexpr uint16_t kNeg = 1, kFracNonzero = 2;

uint64_t int_part(const Frame& f) {
  return static_cast<uint64_t>(f.a) | (static_cast<uint64_t>(f.b) << 32);
}
void set_int_part(Frame& f, uint64_t m) {
  f.a = static_cast<uint32_t>(m);
  f.b = static_cast<uint32_t>(m >> 32);
}

// The magnitudes |x| allowed for values x of one sign: [lo, hi] with open ends marked; empty
// when no value of that sign is in range. __int128: negating an int64 bound cannot overflow.
struct MagRange {
  bool empty = false;
  __int128 lo = 0, hi = 0;
  bool lo_open = false, hi_open = false;
};

MagRange magnitudes(const GrammarNode& n, bool negative) {
  constexpr __int128 kInf = static_cast<__int128>(1) << 100;
  __int128 lo = n.has_lo ? n.lo : -kInf, hi = n.has_hi ? n.hi : kInf;
  bool lo_open = n.lo_open, hi_open = n.hi_open;
  MagRange r;
  if (negative) {  // x in <lo, hi>  <=>  -x in <-hi, -lo>
    r.lo = -hi, r.lo_open = hi_open, r.hi = -lo, r.hi_open = lo_open;
  } else {
    r.lo = lo, r.lo_open = lo_open, r.hi = hi, r.hi_open = hi_open;
  }
  if (r.lo < 0) r.lo = 0, r.lo_open = false;  // magnitude 0 is inside a range that spans it
  r.empty = r.hi < r.lo || (r.hi == r.lo && (r.lo_open || r.hi_open));
  return r;
}

bool mag_contains(const MagRange& r, __int128 v) {
  return !r.empty && (r.lo_open ? v > r.lo : v >= r.lo) && (r.hi_open ? v < r.hi : v <= r.hi);
}

// Some magnitude in the open interval (v, v + 1) is allowed (the bounds are integers).
bool mag_between(const MagRange& r, __int128 v) {
  return !r.empty && r.lo <= v && r.hi >= v + 1;
}

// Some integer, or some real when `real`, in [c, d] (c, d integers) is allowed.
bool mag_meets(const MagRange& r, __int128 c, __int128 d, bool real) {
  if (r.empty) return false;
  if (real) return c < r.hi + (r.hi_open ? 0 : 1) && r.lo < d + 1;  // [c, d + 1) meets <lo, hi>
  const __int128 lo = r.lo + (r.lo_open ? 1 : 0), hi = r.hi - (r.hi_open ? 1 : 0);
  return std::max(lo, c) <= std::min(hi, d);
}

// Whether the number written so far (in a phase after a byte) can still end in range.
bool number_feasible(const Frame& f, const GrammarNode& n, bool integer) {
  const bool neg = (f.aux2 & kNeg) != 0;
  const bool real = !integer;
  switch (f.phase) {
    case kNStart:
      return true;  // the compiler refused empty ranges
    case kNMinus:
      return mag_meets(magnitudes(n, true), 0, static_cast<__int128>(999'999'999'999'999'999),
                       real);
    case kNZero:
    case kNInt: {
      const MagRange r = magnitudes(n, neg);
      const __int128 m = int_part(f);
      // Integer parts reachable: m itself, then m * 10^j .. m * 10^j + 10^j - 1 while digits
      // remain (none after a leading 0).
      const int more = f.phase == kNZero ? 0 : static_cast<int>(kMaxIntDigits) - f.aux;
      __int128 p = 1;
      for (int j = 0; j <= more; ++j, p *= 10)
        if (mag_meets(r, m * p, m * p + p - 1, real)) return true;
      return false;
    }
    case kNDot:
    case kNFrac: {
      const MagRange r = magnitudes(n, neg);
      const __int128 m = int_part(f);
      const bool digits_left = f.phase == kNDot || f.aux < kMaxFracDigits;
      const bool exact = (f.aux2 & kFracNonzero) == 0;  // all zeros so far: m is reachable
      return (exact && mag_contains(r, m)) ||
             ((!exact || digits_left) && mag_between(r, m));
    }
    default:
      return false;  // exponents are not written under bounds
  }
}

// Whether the number as written is in range (it has ended).
bool number_in_range(const Frame& f, const GrammarNode& n) {
  const MagRange r = magnitudes(n, (f.aux2 & kNeg) != 0);
  const __int128 m = int_part(f);
  return (f.aux2 & kFracNonzero) ? mag_between(r, m) : mag_contains(r, m);
}

}  // namespace

std::string MatchState::key() const {
  std::string k(frames.size() * sizeof(Frame) + ends.size() * sizeof(uint32_t), '\0');
  if (!frames.empty()) std::memcpy(k.data(), frames.data(), frames.size() * sizeof(Frame));
  if (!ends.empty()) {
    std::memcpy(k.data() + frames.size() * sizeof(Frame), ends.data(),
                ends.size() * sizeof(uint32_t));
  }
  return k;
}

MatchState JsonMatcher::initial() const {
  MatchState s;
  push_value(&s, 0, g_.root(), -1);
  return s;
}

bool JsonMatcher::step(const MatchState& in, uint8_t c, MatchState* out) const {
  out->frames.clear();
  out->ends.clear();
  uint32_t prev = 0;
  for (uint32_t e : in.ends) {
    const size_t begin = out->frames.size();
    out->frames.insert(out->frames.end(), in.frames.begin() + prev, in.frames.begin() + e);
    prev = e;
    feed_stack(out, begin, c);
  }
  if (out->ends.size() > 1) {  // merge identical stacks (forks that converged)
    std::vector<Frame> frames;
    std::vector<uint32_t> ends;
    uint32_t p = 0;
    for (uint32_t e : out->ends) {
      bool dup = false;
      uint32_t q = 0;
      for (uint32_t f : ends) {
        if (f - q == e - p &&
            std::memcmp(&frames[q], &out->frames[p], (e - p) * sizeof(Frame)) == 0) {
          dup = true;
          break;
        }
        q = f;
      }
      if (!dup) {
        frames.insert(frames.end(), out->frames.begin() + p, out->frames.begin() + e);
        ends.push_back(static_cast<uint32_t>(frames.size()));
      }
      p = e;
    }
    out->frames.swap(frames);
    out->ends.swap(ends);
  }
  return !out->ends.empty();
}

void JsonMatcher::commit(MatchState* st, size_t begin) const {
  if (st->ends.size() >= kMaxStacks) {
    st->frames.resize(begin);  // dropping an alternative keeps every output valid
    return;
  }
  st->ends.push_back(static_cast<uint32_t>(st->frames.size()));
}

// The stack is st->frames[begin..end): the last, not yet committed one. c < 0: no byte.
void JsonMatcher::feed_stack(MatchState* st, size_t begin, int c) const {
  while (st->frames.size() > begin) {
    Push push;
    switch (step_frame(st->frames.back(), static_cast<uint8_t>(c), &push)) {
      case Action::kKeep:
        commit(st, begin);
        return;
      case Action::kPop:
        st->frames.pop_back();
        commit(st, begin);
        return;
      case Action::kPopRetry:
        st->frames.pop_back();
        continue;
      case Action::kPushConsumed:
        if (st->frames.size() - begin >= kMaxDepth) break;
        st->frames.push_back(push.frame);
        commit(st, begin);
        return;
      case Action::kPushValue:
        push_value(st, begin, push.node, c);
        return;
      case Action::kDead:
        break;
    }
    break;
  }
  st->frames.resize(begin);
}

// Pushes a frame for a value of `node` (one stack per anyOf alternative) and feeds it c.
void JsonMatcher::push_value(MatchState* st, size_t begin, uint32_t node, int c) const {
  const GrammarNode* n = &g_.node(node);
  while (n->kind == NodeKind::kAlias) {
    node = n->target;
    n = &g_.node(node);
  }
  if (n->kind == NodeKind::kAnyOf) {
    const std::vector<Frame> saved(st->frames.begin() + begin, st->frames.end());
    for (size_t i = 0; i < n->alts.size(); ++i) {
      size_t b = begin;
      if (i > 0) {
        b = st->frames.size();
        st->frames.insert(st->frames.end(), saved.begin(), saved.end());
      }
      push_value(st, b, n->alts[i], c);
    }
    return;
  }
  if (st->frames.size() - begin >= kMaxDepth) {
    st->frames.resize(begin);
    return;
  }
  Frame f;
  f.node = node;
  if (n->kind == NodeKind::kLiteral) f.a = n->trie_root;
  st->frames.push_back(f);
  if (c < 0) {
    commit(st, begin);
  } else {
    feed_stack(st, begin, c);
  }
}

JsonMatcher::Action JsonMatcher::step_frame(Frame& f, uint8_t c, Push* push) const {
  const GrammarNode& n = g_.node(f.node);
  switch (n.kind) {
    case NodeKind::kString:
      return step_string(f, n, c);
    case NodeKind::kNumber:
      return step_number(f, n, false, c);
    case NodeKind::kInteger:
      return step_number(f, n, true, c);
    case NodeKind::kLiteral:
      return step_literal(f, c);
    case NodeKind::kObject:
      return step_object(f, n, c, push);
    case NodeKind::kArray:
      return step_array(f, n, c, push);
    default:
      return Action::kDead;  // unions and aliases are never on a stack
  }
}

// Advances a patterned string's automaton (frame field b) by one content byte.
bool JsonMatcher::dfa_step(Frame& f, const GrammarNode& n, uint8_t c) {
  if (c == '\\') return false;
  const uint32_t next = n.dfa->next(f.b, c);
  if (next == ByteDfa::kDead) return false;
  f.b = next;
  return true;
}

// Counts one more code point of a string; false when maxLength is reached.
bool JsonMatcher::count_char(Frame& f, const GrammarNode& n) {
  if (n.max_len != kUnbounded && f.a >= n.max_len) return false;
  const uint32_t cap = n.max_len != kUnbounded ? n.max_len : n.min_len;  // saturate: fewer states
  if (f.a < cap) ++f.a;
  return true;
}

JsonMatcher::Action JsonMatcher::step_string(Frame& f, const GrammarNode& n, uint8_t c) const {
  switch (f.phase) {
    case kSOpen:
      if (c != '"') return Action::kDead;
      f.phase = kSBody;
      return Action::kKeep;
    case kSBody: {
      if (c == '"') {
        const bool matched = !n.dfa || n.dfa->accepting(f.b);
        return f.a >= n.min_len && matched ? Action::kPop : Action::kDead;
      }
      if (c < 0x20 || c == 0x7F) return Action::kDead;  // control characters
      if (n.dfa && !dfa_step(f, n, c)) return Action::kDead;  // no escapes under a pattern
      if (c == '\\') {
        if (!count_char(f, n)) return Action::kDead;
        f.phase = kSEsc;
        return Action::kKeep;
      }
      if (c < 0x80) return count_char(f, n) ? Action::kKeep : Action::kDead;
      uint8_t need = 0;
      uint16_t range = 0;
      if (!utf8_lead(c, &need, &range) || !count_char(f, n)) return Action::kDead;
      f.phase = kSCont;
      f.aux = need;
      f.aux2 = range;
      return Action::kKeep;
    }
    case kSCont:
      if (!utf8_cont_ok(c, f.aux2)) return Action::kDead;
      if (n.dfa && !dfa_step(f, n, c)) return Action::kDead;
      f.aux2 = 0;
      if (--f.aux == 0) f.phase = kSBody;
      return Action::kKeep;
    default:
      return step_escape(f, c);
  }
}

// After a backslash: one escape, or \uXXXX where a high surrogate must be followed by a
// \uXXXX low surrogate (a lone surrogate is not valid Unicode text).
JsonMatcher::Action JsonMatcher::step_escape(Frame& f, uint8_t c) {
  switch (f.phase) {
    case kSEsc:
      if (c == 'u') {
        f.phase = kSHex;
        f.aux = 0;
        f.aux2 = 0;
        return Action::kKeep;
      }
      if (c == 0 || std::strchr("\"\\/bfnrt", c) == nullptr) return Action::kDead;
      f.phase = kSBody;
      return Action::kKeep;
    case kSHex: {
      const int v = hex_value(c);
      if (v < 0) return Action::kDead;
      if (f.aux == 0) f.aux2 = v == 0xD ? 1 : 0;  // maybe a surrogate
      if (f.aux == 1 && f.aux2 == 1) {
        if (v >= 0xC) return Action::kDead;  // lone low surrogate
        f.aux2 = v >= 0x8 ? 2 : 0;           // 2: high surrogate, a low one must follow
      }
      if (++f.aux == 4) {
        f.phase = f.aux2 == 2 ? kSLowBs : kSBody;
        f.aux = 0;
        f.aux2 = 0;
      }
      return Action::kKeep;
    }
    case kSLowBs:
      if (c != '\\') return Action::kDead;
      f.phase = kSLowU;
      return Action::kKeep;
    case kSLowU:
      if (c != 'u') return Action::kDead;
      f.phase = kSLowHex;
      f.aux = 0;
      return Action::kKeep;
    case kSLowHex: {
      const int v = hex_value(c);
      if (v < 0 || (f.aux == 0 && v != 0xD) || (f.aux == 1 && v < 0xC)) return Action::kDead;
      if (++f.aux == 4) {
        f.phase = kSBody;
        f.aux = 0;
      }
      return Action::kKeep;
    }
    default:
      return Action::kDead;
  }
}

JsonMatcher::Action JsonMatcher::step_number_syntax(Frame& f, bool integer, uint8_t c) {
  auto to = [&](uint8_t phase, uint8_t digits) {
    f.phase = phase;
    f.aux = digits;
    return Action::kKeep;
  };
  const bool digit = is_digit(c);
  const bool dot = !integer && c == '.';
  const bool exp = !integer && (c == 'e' || c == 'E');
  switch (f.phase) {
    case kNStart:
      if (c == '-') return to(kNMinus, 0);
      [[fallthrough]];
    case kNMinus:
      if (c == '0') return to(kNZero, 1);
      if (digit) return to(kNInt, 1);
      return Action::kDead;
    case kNZero:
      if (dot) return to(kNDot, 0);
      if (exp) return to(kNExpMark, 0);
      return Action::kPopRetry;
    case kNInt:
      if (digit && f.aux < kMaxIntDigits) return to(kNInt, f.aux + 1);
      if (dot) return to(kNDot, 0);
      if (exp) return to(kNExpMark, 0);
      return Action::kPopRetry;
    case kNDot:
      return digit ? to(kNFrac, 1) : Action::kDead;
    case kNFrac:
      if (digit && f.aux < kMaxFracDigits) return to(kNFrac, f.aux + 1);
      if (exp) return to(kNExpMark, 0);
      return Action::kPopRetry;
    case kNExpMark:
      if (c == '+' || c == '-') return to(kNExpSign, 0);
      [[fallthrough]];
    case kNExpSign:
      return digit ? to(kNExp, 1) : Action::kDead;
    case kNExp:
      if (digit && f.aux < kMaxExpDigits) return to(kNExp, f.aux + 1);
      return Action::kPopRetry;
    default:
      return Action::kDead;
  }
}

JsonMatcher::Action JsonMatcher::step_number(Frame& f, const GrammarNode& n, bool integer,
                                             uint8_t c) const {
  if (!n.bounded) return step_number_syntax(f, integer, c);
  if (c == 'e' || c == 'E') return Action::kDead;
  const Frame before = f;
  const Action a = step_number_syntax(f, integer, c);
  if (a == Action::kPopRetry) return number_in_range(before, n) ? a : Action::kDead;
  if (a != Action::kKeep) return a;
  if (f.phase == kNMinus) {
    f.aux2 |= kNeg;
  } else if (f.phase == kNZero || f.phase == kNInt) {
    set_int_part(f, int_part(before) * 10 + static_cast<uint64_t>(c - '0'));
  } else if (f.phase == kNFrac && c != '0') {
    f.aux2 |= kFracNonzero;
  }
  return number_feasible(f, n, integer) ? a : Action::kDead;
}

JsonMatcher::Action JsonMatcher::step_literal(Frame& f, uint8_t c) const {
  const int64_t child = g_.trie_child(f.a, c);
  if (child < 0) return g_.trie_node(f.a).value >= 0 ? Action::kPopRetry : Action::kDead;
  f.a = static_cast<uint32_t>(child);
  f.phase = 1;
  return g_.trie_node(f.a).n_edges == 0 ? Action::kPop : Action::kKeep;
}

JsonMatcher::Action JsonMatcher::step_object(Frame& f, const GrammarNode& n, uint8_t c,
                                             Push* push) const {
  const bool map = n.map_value >= 0;
  const auto n_props = static_cast<uint32_t>(n.props.size());
  auto begin_key = [&]() {
    if (map) {
      f.phase = kOColon;
      push->frame.node = g_.key_string();
      push->frame.phase = kSBody;
      return Action::kPushConsumed;
    }
    if (f.a >= n_props) return Action::kDead;
    f.b = static_cast<uint32_t>(g_.trie_child(n.key_roots[f.a], '"'));  // every key has one
    f.phase = kOKey;
    return Action::kKeep;
  };
  auto value = [&]() {
    f.phase = kOAfterValue;
    push->node = map ? static_cast<uint32_t>(n.map_value) : n.props[f.a].value;
    if (!map) ++f.a;
    return Action::kPushValue;
  };
  const bool may_close = map || !n.required_from[f.a];
  switch (f.phase) {
    case kOOpen:
      if (c != '{') return Action::kDead;
      f.phase = kOFirst;
      f.a = 0;
      return Action::kKeep;
    case kOFirst:
      if (c == '}') return may_close ? Action::kPop : Action::kDead;
      return c == '"' ? begin_key() : Action::kDead;
    case kOKey: {
      const int64_t child = g_.trie_child(f.b, c);
      if (child < 0) return Action::kDead;
      f.b = static_cast<uint32_t>(child);
      const int32_t prop = g_.trie_node(f.b).value;
      if (prop >= 0) {
        f.phase = kOColon;
        f.a = static_cast<uint32_t>(prop);
        f.b = 0;
      }
      return Action::kKeep;
    }
    case kOColon:
      if (c != ':') return Action::kDead;
      f.phase = kOAfterColon;
      return Action::kKeep;
    case kOAfterColon:
      if (c == ' ') {
        f.phase = kOValue;
        return Action::kKeep;
      }
      return value();
    case kOValue:
      return value();
    case kOAfterValue:
      if (c == '}') return may_close ? Action::kPop : Action::kDead;
      if (c != ',' || !(map || f.a < n_props)) return Action::kDead;
      f.phase = kOAfterComma;
      return Action::kKeep;
    case kOAfterComma:
      if (c == ' ') {
        f.phase = kOKeyStart;
        return Action::kKeep;
      }
      [[fallthrough]];
    case kOKeyStart:
      return c == '"' ? begin_key() : Action::kDead;
    default:
      return Action::kDead;
  }
}

JsonMatcher::Action JsonMatcher::step_array(Frame& f, const GrammarNode& n, uint8_t c,
                                            Push* push) const {
  auto item_node = [&](uint32_t k) -> int64_t {
    if (k >= n.max_items) return -1;
    return k < n.prefix.size() ? static_cast<int64_t>(n.prefix[k]) : n.items;
  };
  auto item = [&]() {
    const int64_t node = item_node(f.a);
    if (node < 0) return Action::kDead;
    const uint32_t cap =
        n.max_items != kUnbounded
            ? n.max_items
            : std::max<uint32_t>(n.min_items, static_cast<uint32_t>(n.prefix.size()));
    if (f.a < cap) ++f.a;
    f.phase = kAAfterValue;
    push->node = static_cast<uint32_t>(node);
    return Action::kPushValue;
  };
  switch (f.phase) {
    case kAOpen:
      if (c != '[') return Action::kDead;
      f.phase = kAFirst;
      f.a = 0;
      return Action::kKeep;
    case kAFirst:
      if (c == ']') return n.min_items == 0 ? Action::kPop : Action::kDead;
      return item();
    case kAAfterValue:
      if (c == ']') return f.a >= n.min_items ? Action::kPop : Action::kDead;
      if (c != ',' || item_node(f.a) < 0) return Action::kDead;
      f.phase = kAAfterComma;
      return Action::kKeep;
    case kAAfterComma:
      if (c == ' ') {
        f.phase = kAValue;
        return Action::kKeep;
      }
      return item();
    case kAValue:
      return item();
    default:
      return Action::kDead;
  }
}

bool JsonMatcher::frame_completable(const Frame& f) const {
  const GrammarNode& n = g_.node(f.node);
  if (n.kind == NodeKind::kLiteral) return f.phase != 0 && g_.trie_node(f.a).value >= 0;
  if (n.kind == NodeKind::kNumber || n.kind == NodeKind::kInteger) {
    const bool ended = f.phase == kNZero || f.phase == kNInt || f.phase == kNFrac || f.phase == kNExp;
    return ended && (!n.bounded || number_in_range(f, n));
  }
  return false;
}

bool JsonMatcher::complete(const MatchState& s) const {
  uint32_t prev = 0;
  for (uint32_t e : s.ends) {
    if (e == prev || (e - prev == 1 && frame_completable(s.frames[prev]))) return true;
    prev = e;
  }
  return false;
}

bool JsonMatcher::can_continue(const MatchState& s) const {
  MatchState tmp;
  for (int c = 0; c < 256; ++c) {
    if (step(s, static_cast<uint8_t>(c), &tmp)) return true;
  }
  return false;
}

bool JsonMatcher::feed(MatchState* s, std::string_view bytes) const {
  MatchState a = *s, b;
  for (unsigned char c : bytes) {
    if (!step(a, c, &b)) return false;
    a.frames.swap(b.frames);
    a.ends.swap(b.ends);
  }
  *s = std::move(a);
  return true;
}

bool JsonMatcher::in_string_body(const MatchState& s, uint32_t* room) const {
  if (s.ends.empty()) return false;
  *room = 0;
  uint32_t prev = 0;
  for (uint32_t e : s.ends) {  // a token of string content is allowed if some stack has room
    if (e == prev) return false;
    const Frame& f = s.frames[e - 1];
    const GrammarNode& n = g_.node(f.node);
    if (n.kind != NodeKind::kString || f.phase != kSBody || n.dfa) return false;
    *room = std::max(*room, n.max_len == kUnbounded ? kUnbounded : n.max_len - f.a);
    prev = e;
  }
  return true;
}

bool JsonMatcher::accepts(std::string_view doc) const {
  MatchState s = initial();
  return feed(&s, doc) && complete(s);
}

}  // namespace jinx
