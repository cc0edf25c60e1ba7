#include "structured/regex_grammar.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/check.h"
#include "structured/scan.h"

namespace jinx {

namespace {

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

const Ranges kDigit = {{'0', '9'}};
const Ranges kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
const Ranges kSpace = {{'\t', '\r'}, {' ', ' '}};  // \t \n \v \f \r and space

// A code point as GBNF writes it inside a class or a literal.
std::string gbnf_char(uint32_t cp) {
  if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') || cp == ' ' ||
      cp == '_' || cp == ',' || cp == ':' || cp == ';' || cp == '@' || cp == '#' || cp == '=')
    return std::string(1, static_cast<char>(cp));
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out = cp < 0x100 ? "\\x" : cp < 0x10000 ? "\\u" : "\\U";
  const int digits = cp < 0x100 ? 2 : cp < 0x10000 ? 4 : 8;
  for (int i = digits - 1; i >= 0; --i) out += kHex[(cp >> (4 * i)) & 15];
  return out;
}

std::string class_text(const Ranges& r, bool negated) {
  std::string out = negated ? "[^" : "[";
  for (const auto& [lo, hi] : r) {
    out += gbnf_char(lo);
    if (hi != lo) {
      out += '-';
      out += gbnf_char(hi);
    }
  }
  out += ']';
  return out;
}

class RegexConverter {
 public:
  explicit RegexConverter(std::string_view re) : s_(re) {}

  std::string run() {
    if (peek() == '^') ++pos_;
    std::string body = parse_alternatives(0);
    if (pos_ < s_.size()) {
      if (s_[pos_] == ')') error("unbalanced ')'");
      error("unexpected character");
    }
    return str("root ::= ", body.empty() ? std::string("\"\"") : body, "\n");
  }

 private:
  [[noreturn]] void error(std::string_view what) const {
    fail(str("regex: ", what, " at offset ", pos_));
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool at_end() const { return pos_ >= s_.size(); }

  std::string parse_alternatives(int depth) {
    std::vector<std::string> alts{parse_sequence(depth)};
    while (peek() == '|') {
      ++pos_;
      alts.push_back(parse_sequence(depth));
    }
    if (alts.size() == 1) return alts[0];
    std::string out = "(";
    for (size_t i = 0; i < alts.size(); ++i) {
      if (i) out += " | ";
      out += alts[i].empty() ? "\"\"" : alts[i];
    }
    out += ')';
    return out;
  }

  std::string parse_sequence(int depth) {
    std::string out;
    for (;;) {
      if (at_end()) break;
      const char c = peek();
      if (c == '|' || c == ')') break;
      if (c == '$') {
        ++pos_;
        if (!(at_end() && depth == 0)) error("'$' is only supported at the end");
        break;
      }
      if (c == '^') error("'^' is only supported at the start");
      std::string atom = parse_atom(depth);
      atom = parse_quantifier(std::move(atom));
      if (!atom.empty()) {
        if (!out.empty()) out += ' ';
        out += atom;
      }
    }
    return out;
  }

  std::string parse_atom(int depth) {
    const char c = s_[pos_];
    if (c == '(') {
      ++pos_;
      if (depth >= 64) error("groups nested too deeply");
      if (peek() == '?') {
        const std::string_view rest = s_.substr(pos_);
        if (rest.substr(0, 2) == "?:") {
          pos_ += 2;
        } else if (rest.substr(0, 3) == "?P<" || (rest.substr(0, 2) == "?<" && rest.size() > 2 &&
                                                  rest[2] != '=' && rest[2] != '!')) {
          const size_t close = s_.find('>', pos_);
          if (close == std::string_view::npos) error("unterminated group name");
          pos_ = close + 1;
        } else {
          error("lookaround, inline flags and other (?...) groups are not supported");
        }
      }
      std::string inner = parse_alternatives(depth + 1);
      if (peek() != ')') error("missing ')'");
      ++pos_;
      return str("(", inner.empty() ? std::string("\"\"") : inner, ")");
    }
    if (c == '*' || c == '+' || c == '?') error("nothing to repeat");
    if (c == '{' && quantifier_at(pos_)) error("nothing to repeat");
    if (c == '[') {
      ++pos_;
      return parse_class();
    }
    if (c == '.') {
      ++pos_;
      return "[^\\n]";
    }
    if (c == '\\') {
      Ranges r;
      bool negated = false;
      const uint32_t cp = parse_escape(&r, &negated, false);
      if (!r.empty()) return class_text(r, negated);
      return str("\"", gbnf_char(cp), "\"");
    }
    return str("\"", gbnf_char(parse_utf8()), "\"");
  }

  // Whether a {m}, {m,}, {m,n}, {,n} or {,} (Python 3.11: {0,}) quantifier starts at i (else
  // '{' is a literal, as in "{}" or "{a}").
  bool quantifier_at(size_t i) const {
    if (i >= s_.size() || s_[i] != '{') return false;
    size_t j = i + 1;
    bool digits = false, comma = false;
    while (j < s_.size() && s_[j] >= '0' && s_[j] <= '9') ++j, digits = true;
    if (j < s_.size() && s_[j] == ',') {
      ++j;
      comma = true;
      while (j < s_.size() && s_[j] >= '0' && s_[j] <= '9') ++j, digits = true;
    }
    return (digits || comma) && j < s_.size() && s_[j] == '}';
  }

  bool octal_digit(size_t i) const { return i < s_.size() && s_[i] >= '0' && s_[i] <= '7'; }
  // `v` then up to `more` octal digits.
  uint32_t octal(uint32_t v, int more) {
    for (; more > 0 && octal_digit(pos_); --more) v = v * 8 + static_cast<uint32_t>(s_[pos_++] - '0');
    return v;
  }

  uint32_t parse_count() {
    uint64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + static_cast<uint64_t>(s_[pos_++] - '0');
      if (v > GbnfGrammar::kMaxRepeat) error(str("repetition count above ", GbnfGrammar::kMaxRepeat));
    }
    return static_cast<uint32_t>(v);
  }

  std::string parse_quantifier(std::string atom) {
    for (bool first = true;; first = false) {
      const char c = peek();
      std::string q;
      if (c == '*' || c == '+' || c == '?') {
        ++pos_;
        q = std::string(1, c);
      } else if (c == '{' && quantifier_at(pos_)) {
        ++pos_;
        const bool no_min = peek() == ',';
        const uint32_t min = no_min ? 0 : parse_count();
        uint32_t max = min;
        bool unbounded = false;
        if (peek() == ',') {
          ++pos_;
          if (peek() == '}') {
            unbounded = true;
          } else {
            max = parse_count();
          }
        }
        ++pos_;  // '}'
        if (!unbounded && max < min) error("{m,n} with n < m");
        q = unbounded ? str("{", min, ",}") : str("{", min, ",", max, "}");
      } else {
        return atom;
      }
      if (!first) error("multiple repeat");
      if (peek() == '?') ++pos_;  // lazy: the same texts match
      else if (peek() == '+') error("possessive quantifiers are not supported");
      if (atom.empty() || atom == "(\"\")") {  // repeating the empty string
        continue;
      }
      // Wrapped so that the sequence reads the repeated item as one unit.
      atom = str("(", atom, q, ")");
    }
  }

  uint32_t parse_utf8() {
    const auto u = scan::utf8(s_, &pos_);
    if (!u) error("invalid UTF-8");
    return *u;
  }

  uint32_t hex(int digits) {
    const auto v = scan::hex(s_, &pos_, digits);
    if (!v) error(str("expected ", digits, " hex digits"));
    if (!scan::is_scalar(*v)) error("escape is not a Unicode scalar value");
    return *v;
  }

  // After '\\': a class escape fills *r (and *negated), else returns the character.
  uint32_t parse_escape(Ranges* r, bool* negated, bool in_class) {
    ++pos_;
    if (at_end()) error("trailing backslash");
    const char e = s_[pos_++];
    switch (e) {
      case 'd': *r = kDigit; return 0;
      case 'w': *r = kWord; return 0;
      case 's': *r = kSpace; return 0;
      case 'D': case 'W': case 'S':
        if (in_class) error(str("\\", e, " inside a class is not supported"));
        *r = e == 'D' ? kDigit : e == 'W' ? kWord : kSpace;
        *negated = true;
        return 0;
      case 'n': return '\n';
      case 't': return '\t';
      case 'r': return '\r';
      case 'f': return '\f';
      case 'v': return '\v';
      case '0': return octal(0, 2);  // \0 and up to two more octal digits, as Python reads it
      case 'x': return hex(2);
      case 'u': return hex(4);
      case 'U': return hex(8);
      case 'b':
        if (in_class) return '\b';
        error("word boundaries (\\b) are not supported");
      case 'B': case 'A': case 'Z': case 'z': case 'G':
        error(str("the anchor \\", e, " is not supported"));
      default:
        // Octal: three digits, or in a class any 1-3 (Python's reading; else a backreference).
        if (e >= '1' && e <= '7' && (in_class || (octal_digit(pos_) && octal_digit(pos_ + 1)))) {
          const uint32_t v = octal(static_cast<uint32_t>(e - '0'), 2);
          if (v > 0377) error("octal escape above \\377");
          return v;
        }
        if (e >= '1' && e <= '9') error("backreferences are not supported");
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z')) error(str("unknown escape \\", e));
        if (static_cast<unsigned char>(e) >= 0x80) {
          --pos_;
          return parse_utf8();
        }
        return static_cast<unsigned char>(e);
    }
  }

  std::string parse_class() {
    bool negated = false;
    if (peek() == '^') {
      negated = true;
      ++pos_;
    }
    Ranges ranges;
    bool first = true;
    for (;;) {
      if (at_end()) error("unterminated character class");
      if (peek() == ']' && !first) {
        ++pos_;
        break;
      }
      first = false;
      uint32_t lo;
      if (peek() == '\\') {
        Ranges r;
        bool neg = false;
        lo = parse_escape(&r, &neg, true);
        if (!r.empty()) {
          ranges.insert(ranges.end(), r.begin(), r.end());
          continue;
        }
      } else {
        lo = parse_utf8();
      }
      uint32_t hi = lo;
      if (peek() == '-' && pos_ + 1 < s_.size() && s_[pos_ + 1] != ']') {
        ++pos_;
        if (peek() == '\\') {
          Ranges r;
          bool neg = false;
          hi = parse_escape(&r, &neg, true);
          if (!r.empty()) error("a class escape cannot end a range");
        } else {
          hi = parse_utf8();
        }
        if (hi < lo) error("bad character range");
      }
      ranges.emplace_back(lo, hi);
    }
    std::sort(ranges.begin(), ranges.end());
    if (ranges.empty()) error("empty character class");
    return class_text(ranges, negated);
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

std::string regex_to_gbnf(std::string_view regex) { return RegexConverter(regex).run(); }

std::shared_ptr<const GbnfGrammar> regex_grammar(std::string_view regex) {
  return GbnfGrammar::parse(regex_to_gbnf(regex));
}

}  // namespace jinx
