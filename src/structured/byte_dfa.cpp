#include "structured/byte_dfa.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>

#include "core/check.h"
#include "structured/gbnf.h"
#include "structured/regex_grammar.h"

namespace jinx {

namespace {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;
constexpr uint32_t kMinByLength[] = {0, 0, 0x80, 0x800, 0x10000};  // shortest form of each length
// A transition into "anything from here on" (ByteDfaBuilder::build's tail).
constexpr uint32_t kToTail = 0xfffffffeu;
// Any character, newline included (regex_grammar refuses [\s\S]).
constexpr std::string_view kAnyText = "[\\x00-\\U0010FFFF]*";

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

[[noreturn]] void too_complex() {
  fail(str("pattern too complex: more than ", ByteDfa::kMaxStates, " states"));
}

void append_u32(std::string* k, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  k->append(b, 4);
}

// The code points of `set` within [lo, hi], less `base`, appended to *out.
void set_within(const GbnfCharSet& set, uint32_t lo, uint32_t hi, uint32_t base, Ranges* out) {
  if (!set.negated) {
    for (const auto& [a, b] : set.ranges) {
      if (b < lo) continue;
      if (a > hi) break;
      out->emplace_back(std::max(a, lo) - base, std::min(b, hi) - base);
    }
    return;
  }
  uint32_t next = lo;
  for (const auto& [a, b] : set.ranges) {
    if (b < next) continue;
    if (a > hi) break;
    if (a > next) out->emplace_back(next - base, a - 1 - base);
    if (b >= hi) return;
    next = b + 1;
  }
  out->emplace_back(next - base, hi - base);
}

// An automaton as explored, before pruning: transitions may be kToTail.
struct RawDfa {
  std::vector<uint32_t> next;  // [n * 256]
  std::vector<uint8_t> accept;
  bool start_is_tail = false;
  size_t n() const { return accept.size(); }
};

// Breadth-first over the matcher states of a grammar. Two matcher states are one automaton
// state when they read the same texts from there on, as far as cheaply known:
// - the same stacks, in any order (the matcher's order can depend on the path taken, which
//   GbnfState::key() tells apart);
// - inside a UTF-8 character, the same stacks with the same completions: the bits read so
//   far (GbnfState::cp) matter only through which continuations each stack's character set
//   and UTF-8 validity allow. Keeping them apart would give `.` over 16000 states per
//   position (every prefix of a 4-byte character).
// Equal keys imply equal languages, so the first matcher state met stands for its key.
class Explorer {
 public:
  Explorer(const GbnfGrammar& g, const std::array<bool, 256>& allowed, bool tail_on_accept, size_t max_states)
      : g_(g), m_(g), allowed_(allowed), tail_on_accept_(tail_on_accept), max_states_(max_states) {}

  RawDfa run() {
    RawDfa out;
    if (intern(m_.initial()) == kToTail) {
      out.start_is_tail = true;
      return out;
    }
    for (size_t i = 0; i < states_.size(); ++i) explore(i);
    out.next = std::move(next_);
    out.accept = std::move(accept_);
    return out;
  }

 private:
  uint32_t intern(GbnfState&& s) {
    // The matcher drops parses past kMaxStacks: the automaton would be wrong, not just big.
    if (s.ends.size() >= GbnfMatcher::kMaxStacks) too_complex();
    if (s.dead()) return ByteDfa::kDead;
    const bool complete = m_.complete(s);
    if (complete && tail_on_accept_) return kToTail;
    key_of(s, &key_);
    if (key_.empty()) return ByteDfa::kDead;
    auto [it, added] = ids_.try_emplace(key_, static_cast<uint32_t>(states_.size()));
    if (added) {
      if (states_.size() >= max_states_) too_complex();
      states_.push_back(std::move(s));
      accept_.push_back(complete);
      next_.resize(next_.size() + 256, ByteDfa::kDead);
    }
    return it->second;
  }

  void key_of(const GbnfState& s, std::string* k) {
    k->clear();
    entries_.clear();
    uint32_t begin = 0;
    if (s.need == 0) {
      for (uint32_t end : s.ends) {
        std::string e;
        append_u32(&e, end - begin);
        e.append(reinterpret_cast<const char*>(s.frames.data() + begin), (end - begin) * 4);
        entries_.push_back(std::move(e));
        begin = end;
      }
      std::sort(entries_.begin(), entries_.end());
      k->push_back('\0');
      for (const auto& e : entries_) *k += e;
      return;
    }
    // The completions of the partial character that are valid UTF-8, relative to its bits.
    const uint32_t shift = 6u * s.need;
    const uint32_t base = s.cp << shift;
    const uint32_t lo = std::max(base, kMinByLength[s.len + s.need]);
    const uint32_t hi = std::min(base | ((1u << shift) - 1), kMaxCodePoint);
    Ranges ranges;
    for (uint32_t end : s.ends) {
      if (end > begin) {
        const GbnfCharSet& set = g_.chars(g_.elems()[s.frames[end - 1]].value);
        ranges.clear();
        if (lo <= std::min(hi, 0xD7FFu)) set_within(set, lo, std::min(hi, 0xD7FFu), base, &ranges);
        if (std::max(lo, 0xE000u) <= hi) set_within(set, std::max(lo, 0xE000u), hi, base, &ranges);
        if (!ranges.empty()) {  // a stack no completion reaches reads nothing
          std::string e;
          append_u32(&e, end - begin);
          e.append(reinterpret_cast<const char*>(s.frames.data() + begin), (end - begin) * 4);
          append_u32(&e, static_cast<uint32_t>(ranges.size()));
          e.append(reinterpret_cast<const char*>(ranges.data()), ranges.size() * sizeof(ranges[0]));
          entries_.push_back(std::move(e));
        }
      }
      begin = end;
    }
    if (entries_.empty()) return;  // dead
    std::sort(entries_.begin(), entries_.end());
    k->push_back(static_cast<char>(s.need));
    for (const auto& e : entries_) *k += e;
  }

  // Stepping a byte that ends a character expands the stacks whose character sets hold it:
  // the bit set of those stacks decides the result, and most bytes share a few.
  uint64_t holders(const GbnfState& s, uint32_t cp) const {
    uint64_t mask = 0;
    uint32_t begin = 0;
    for (size_t k = 0; k < s.ends.size(); ++k) {
      const uint32_t end = s.ends[k];
      if (end > begin && g_.chars(g_.elems()[s.frames[end - 1]].value).contains(cp)) mask |= uint64_t{1} << k;
      begin = end;
    }
    return mask;
  }

  void explore(size_t i) {
    const GbnfState& s = states_[i];  // a deque: stays put while states are added
    memo_.clear();
    auto row = [&](int c) -> uint32_t& { return next_[i * 256 + static_cast<size_t>(c)]; };
    auto by_step = [&](int c) -> uint32_t {
      if (!m_.step(s, static_cast<uint8_t>(c), &scratch_)) return ByteDfa::kDead;
      return intern(std::move(scratch_));
    };
    auto by_holders = [&](int c, uint64_t mask) -> uint32_t {
      if (mask == 0) return ByteDfa::kDead;
      for (const auto& [m, id] : memo_)
        if (m == mask) return id;
      const uint32_t id = by_step(c);
      memo_.emplace_back(mask, id);
      return id;
    };
    if (s.need == 0) {
      for (int c = 0; c < 0x80; ++c)
        if (allowed_[c]) row(c) = by_holders(c, holders(s, static_cast<uint32_t>(c)));
      for (int c = 0xC2; c <= 0xF4; ++c)  // lead bytes; the others never start a character
        if (allowed_[c]) row(c) = by_step(c);
    } else if (s.need == 1) {
      const int total = s.len + 1;
      for (int c = 0x80; c < 0xC0; ++c) {
        if (!allowed_[c]) continue;
        const uint32_t cp = (s.cp << 6) | static_cast<uint32_t>(c & 0x3F);
        if (cp < kMinByLength[total] || cp > kMaxCodePoint || (cp >= 0xD800 && cp <= 0xDFFF)) continue;
        row(c) = by_holders(c, holders(s, cp));
      }
    } else {
      for (int c = 0x80; c < 0xC0; ++c)
        if (allowed_[c]) row(c) = by_step(c);
    }
  }

  const GbnfGrammar& g_;
  const GbnfMatcher m_;
  const std::array<bool, 256>& allowed_;
  const bool tail_on_accept_;
  const size_t max_states_;
  std::deque<GbnfState> states_;
  std::vector<uint32_t> next_;
  std::vector<uint8_t> accept_;
  std::unordered_map<std::string, uint32_t> ids_;
  std::string key_;
  std::vector<std::string> entries_;
  std::vector<std::pair<uint64_t, uint32_t>> memo_;
  GbnfState scratch_;
};

// Hopcroft's partition refinement: the blocks of states that read the same texts. States are
// 0..n-1 where n-1 is the dead state; bytes that act alike on every state count as one.
std::vector<uint32_t> minimize(const std::vector<uint32_t>& next, const std::vector<uint8_t>& accept) {
  const size_t n = accept.size();
  std::map<std::vector<uint32_t>, uint32_t> columns;
  std::vector<int> rep;  // a byte of each class
  std::vector<uint32_t> column(n);
  for (int c = 0; c < 256; ++c) {
    for (size_t s = 0; s < n; ++s) column[s] = next[s * 256 + static_cast<size_t>(c)];
    if (columns.try_emplace(column, static_cast<uint32_t>(rep.size())).second) rep.push_back(c);
  }
  const size_t k = rep.size();
  // Predecessors of each state under each class (compressed rows).
  std::vector<uint32_t> pred_start(k * (n + 1) + 1, 0), preds(k * n);
  for (size_t c = 0; c < k; ++c)
    for (size_t s = 0; s < n; ++s) ++pred_start[c * (n + 1) + next[s * 256 + static_cast<size_t>(rep[c])] + 1];
  for (size_t i = 1; i < pred_start.size(); ++i) pred_start[i] += pred_start[i - 1];
  {
    std::vector<uint32_t> fill(pred_start.begin(), pred_start.end() - 1);
    for (size_t c = 0; c < k; ++c)
      for (size_t s = 0; s < n; ++s)
        preds[fill[c * (n + 1) + next[s * 256 + static_cast<size_t>(rep[c])]]++] = static_cast<uint32_t>(s);
  }
  // Blocks are runs of `elems`; a block's marked states sit at its front.
  std::vector<uint32_t> elems(n), loc(n), blk(n), first, end, marked;
  {
    uint32_t at = 0;
    for (uint8_t want : {uint8_t{1}, uint8_t{0}}) {
      const uint32_t b = static_cast<uint32_t>(first.size());
      const uint32_t from = at;
      for (size_t s = 0; s < n; ++s)
        if (accept[s] == want) elems[at] = static_cast<uint32_t>(s), loc[s] = at++, blk[s] = b;
      if (at > from) first.push_back(from), end.push_back(at), marked.push_back(0);
    }
  }
  std::vector<uint8_t> in_work(n * k, 0);
  std::vector<std::pair<uint32_t, uint32_t>> work;
  if (first.size() == 2) {
    const uint32_t smaller = end[0] - first[0] <= end[1] - first[1] ? 0 : 1;
    for (uint32_t c = 0; c < k; ++c) work.emplace_back(smaller, c), in_work[smaller * k + c] = 1;
  }
  std::vector<uint32_t> splitter, touched;
  while (!work.empty()) {
    const auto [a, c] = work.back();
    work.pop_back();
    in_work[a * k + c] = 0;
    splitter.assign(elems.begin() + first[a], elems.begin() + end[a]);  // marking reorders a
    for (uint32_t t : splitter) {
      for (uint32_t i = pred_start[c * (n + 1) + t]; i < pred_start[c * (n + 1) + t + 1]; ++i) {
        const uint32_t p = preds[i], b = blk[p];
        const uint32_t at = loc[p], to = first[b] + marked[b];
        std::swap(elems[at], elems[to]);
        loc[elems[at]] = at;
        loc[elems[to]] = to;
        if (marked[b]++ == 0) touched.push_back(b);
      }
    }
    for (uint32_t b : touched) {
      const uint32_t m = marked[b];
      marked[b] = 0;
      if (m == end[b] - first[b]) continue;
      const uint32_t nb = static_cast<uint32_t>(first.size());
      first.push_back(first[b]);
      end.push_back(first[b] + m);
      marked.push_back(0);
      first[b] += m;
      for (uint32_t i = first[nb]; i < end[nb]; ++i) blk[elems[i]] = nb;
      for (uint32_t d = 0; d < k; ++d) {
        if (in_work[b * k + d]) {
          work.emplace_back(nb, d), in_work[nb * k + d] = 1;
        } else {
          const uint32_t x = end[nb] - first[nb] <= end[b] - first[b] ? nb : b;
          work.emplace_back(x, d), in_work[x * k + d] = 1;
        }
      }
    }
    touched.clear();
  }
  return blk;
}

}  // namespace

class ByteDfaBuilder {
 public:
  // The automaton of `g`; with `tail`, every text that reaches an accepting state of `g` goes
  // on as `tail` reads (the rest of the text is then tail's alone), which keeps the parses
  // still open from multiplying the states.
  static std::shared_ptr<const ByteDfa> build(const GbnfGrammar& g, const GbnfGrammar* tail,
                                              const std::array<bool, 256>& allowed) {
    RawDfa after;
    if (tail) after = Explorer(*tail, allowed, false, ByteDfa::kMaxStates).run();
    RawDfa raw = Explorer(g, allowed, tail != nullptr, ByteDfa::kMaxStates - after.n()).run();
    uint32_t start = 0;
    if (raw.start_is_tail) start = static_cast<uint32_t>(raw.n());
    if (tail) {
      const uint32_t offset = static_cast<uint32_t>(raw.n());
      for (uint32_t& t : raw.next)
        if (t == kToTail) t = offset;
      for (uint32_t t : after.next) raw.next.push_back(t == ByteDfa::kDead ? t : t + offset);
      raw.accept.insert(raw.accept.end(), after.accept.begin(), after.accept.end());
    }
    return finish(raw, start);
  }

 private:
  // Drops the states that cannot reach acceptance, merges those that read the same texts and
  // numbers the rest breadth-first from the start (0).
  static std::shared_ptr<const ByteDfa> finish(const RawDfa& raw, uint32_t start) {
    const size_t n = raw.n();
    std::vector<uint32_t> rstart(n + 1, 0), rev(n * 256);
    size_t edges = 0;
    for (size_t s = 0; s < n; ++s)
      for (int c = 0; c < 256; ++c)
        if (const uint32_t t = raw.next[s * 256 + static_cast<size_t>(c)]; t != ByteDfa::kDead) ++rstart[t + 1], ++edges;
    for (size_t i = 1; i <= n; ++i) rstart[i] += rstart[i - 1];
    {
      std::vector<uint32_t> fill(rstart.begin(), rstart.end() - 1);
      for (size_t s = 0; s < n; ++s)
        for (int c = 0; c < 256; ++c)
          if (const uint32_t t = raw.next[s * 256 + static_cast<size_t>(c)]; t != ByteDfa::kDead)
            rev[fill[t]++] = static_cast<uint32_t>(s);
    }
    std::vector<uint8_t> live(n, 0);
    std::vector<uint32_t> queue;
    for (size_t s = 0; s < n; ++s)
      if (raw.accept[s]) live[s] = 1, queue.push_back(static_cast<uint32_t>(s));
    for (size_t i = 0; i < queue.size(); ++i)
      for (uint32_t j = rstart[queue[i]]; j < rstart[queue[i] + 1]; ++j)
        if (!live[rev[j]]) live[rev[j]] = 1, queue.push_back(rev[j]);
    if (start >= n || !live[start]) fail("pattern: no text made of the allowed bytes matches it");

    // The live states, then one dead state for every other transition.
    std::vector<uint32_t> id(n, ByteDfa::kDead);
    uint32_t n_live = 0;
    for (size_t s = 0; s < n; ++s)
      if (live[s]) id[s] = n_live++;
    const uint32_t dead = n_live;
    std::vector<uint32_t> next(static_cast<size_t>(n_live + 1) * 256, dead);
    std::vector<uint8_t> accept(n_live + 1, 0);
    for (size_t s = 0; s < n; ++s) {
      if (!live[s]) continue;
      accept[id[s]] = raw.accept[s];
      for (int c = 0; c < 256; ++c) {
        const uint32_t t = raw.next[s * 256 + static_cast<size_t>(c)];
        if (t != ByteDfa::kDead && live[t]) next[id[s] * 256 + static_cast<size_t>(c)] = id[t];
      }
    }
    const std::vector<uint32_t> blk = minimize(next, accept);

    std::vector<uint32_t> number(n_live + 1, ByteDfa::kDead), order{id[start]};
    number[blk[id[start]]] = 0;
    auto dfa = std::make_shared<ByteDfa>();
    for (size_t i = 0; i < order.size(); ++i) {
      const uint32_t s = order[i];
      dfa->accept_.push_back(accept[s]);
      for (int c = 0; c < 256; ++c) {
        const uint32_t t = next[s * 256 + static_cast<size_t>(c)];
        uint32_t to = ByteDfa::kDead;
        if (blk[t] != blk[dead]) {
          if (number[blk[t]] == ByteDfa::kDead) {
            number[blk[t]] = static_cast<uint32_t>(order.size());
            order.push_back(t);
          }
          to = number[blk[t]];
        }
        dfa->next_.push_back(to);
      }
    }
    return dfa;
  }
};

std::shared_ptr<const ByteDfa> ByteDfa::from_regex(std::string_view regex, const std::array<bool, 256>& allowed) {
  return ByteDfaBuilder::build(*regex_grammar(regex), nullptr, allowed);
}

std::array<bool, 256> ByteDfa::json_string_bytes() {
  std::array<bool, 256> allowed{};
  // DEL is valid in JSON text but outside the matcher's output policy (json_matcher.cpp).
  for (int c = 0x20; c < 256; ++c) allowed[c] = c != '"' && c != '\\' && c != 0x7F;
  return allowed;
}

namespace {

// The top-level alternatives of a pattern: '|' outside groups and classes (read as
// regex_grammar reads them: a ']' right after '[' or '[^' is a member).
std::vector<std::string_view> top_level_alternatives(std::string_view p) {
  std::vector<std::string_view> alts;
  size_t from = 0;
  int depth = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\') {
      ++i;
    } else if (c == '[') {
      ++i;
      if (i < p.size() && p[i] == '^') ++i;
      if (i < p.size() && p[i] == ']') ++i;
      while (i < p.size() && p[i] != ']') i += p[i] == '\\' ? 2 : 1;
      if (i >= p.size()) fail("pattern: unterminated character class");
    } else if (c == '(') {
      ++depth;
    } else if (c == ')') {
      // Else `a)|(b` would come out as a valid regex once wrapped as (?:a)|(?:b).
      if (--depth < 0) fail("pattern: unbalanced ')'");
    } else if (c == '|' && depth == 0) {
      alts.push_back(p.substr(from, i - from));
      from = i + 1;
    }
  }
  if (depth != 0) fail("pattern: missing ')'");
  alts.push_back(p.substr(from));
  return alts;
}

bool ends_with_anchor(std::string_view s) {
  if (s.empty() || s.back() != '$') return false;
  size_t backslashes = 0;
  while (backslashes + 1 < s.size() && s[s.size() - 2 - backslashes] == '\\') ++backslashes;
  return backslashes % 2 == 0;
}

}  // namespace

std::shared_ptr<const ByteDfa> ByteDfa::for_json_pattern(std::string_view pattern) {
  struct Alt {
    std::string_view body;
    bool at_start = false, at_end = false;
  };
  std::vector<Alt> alts;
  bool any_at_end = false;
  for (std::string_view a : top_level_alternatives(pattern)) {
    Alt alt;
    while (!a.empty() && a.front() == '^') a.remove_prefix(1), alt.at_start = true;
    while (ends_with_anchor(a)) a.remove_suffix(1), alt.at_end = true;
    alt.body = a;
    any_at_end |= alt.at_end;
    // Checked alone, so that errors point into the pattern's own text and a body cannot
    // change meaning inside the (?: ) it gets below (a trailing backslash would escape it).
    try {
      regex_to_gbnf(a);
    } catch (const Error& e) {
      fail(str("pattern '", pattern, "': ", e.what()));
    }
    alts.push_back(alt);
  }
  // Without any `$` the language is (some match) followed by anything: the automaton of the
  // matches alone, its accepting states leading into "any text". The matches still open
  // would otherwise multiply the states (each subset of them is a state until minimized).
  const bool tail = !any_at_end;
  std::string regex;
  for (const Alt& a : alts) {
    if (!regex.empty()) regex += '|';
    regex += "(?:";
    if (!a.at_start) regex += kAnyText;
    regex += "(?:";
    regex += a.body;
    regex += ')';
    if (!a.at_end && !tail) regex += kAnyText;
    regex += ')';
  }
  const auto allowed = json_string_bytes();
  const auto g = regex_grammar(regex);
  if (!tail) return ByteDfaBuilder::build(*g, nullptr, allowed);
  const auto any = regex_grammar(kAnyText);
  return ByteDfaBuilder::build(*g, any.get(), allowed);
}

uint32_t ByteDfa::next(uint32_t state, uint8_t byte) const {
  if (state == kDead) return kDead;
  JINX_CHECK(state < n_states(), "ByteDfa: state ", state, " of ", n_states());
  return next_[static_cast<size_t>(state) * 256 + byte];
}

bool ByteDfa::accepting(uint32_t state) const {
  if (state == kDead) return false;
  JINX_CHECK(state < n_states(), "ByteDfa: state ", state, " of ", n_states());
  return accept_[state] != 0;
}

bool ByteDfa::matches(std::string_view bytes) const {
  uint32_t s = start();
  for (char c : bytes) {
    s = next_[static_cast<size_t>(s) * 256 + static_cast<uint8_t>(c)];
    if (s == kDead) return false;
  }
  return accept_[s] != 0;
}

}  // namespace jinx
