#include "tokenizer/jinja_lexer.h"

#include <cctype>
#include <cstdlib>

#include "core/check.h"
#include "tokenizer/jinja_value.h"

namespace jinx::jinja {
namespace {

[[noreturn]] void syntax_error(int line, const std::string& msg) {
  fail("template line ", line, ": ", msg);
}

// Newlines normalized to "\n", one trailing newline dropped (keep_trailing_newline=False).
std::string normalize_source(const std::string& src) {
  std::string out;
  out.reserve(src.size());
  for (size_t k = 0; k < src.size(); ++k) {
    if (src[k] == '\r') {
      out += '\n';
      if (k + 1 < src.size() && src[k + 1] == '\n') ++k;
    } else {
      out += src[k];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool starts_with(const std::string& s, size_t pos, const char* lit) {
  return s.compare(pos, std::char_traits<char>::length(lit), lit) == 0;
}

// Length of the run of Python whitespace (`\s*`) starting at pos.
size_t space_run(const std::string& s, size_t pos) {
  size_t p = pos;
  while (p < s.size()) {
    size_t q = p;
    if (!is_py_space(next_code_point(s, q))) break;
    p = q;
  }
  return p - pos;
}

// Python's str.rstrip(): strips trailing whitespace code points.
size_t rstrip_len(const std::string& s, size_t begin, size_t end) {
  std::vector<size_t> starts;
  size_t p = begin;
  while (p < end) {
    starts.push_back(p);
    next_code_point(s, p);
  }
  size_t keep = end;
  for (size_t k = starts.size(); k-- > 0;) {
    size_t q = starts[k];
    if (!is_py_space(next_code_point(s, q))) break;
    keep = starts[k];
  }
  return keep;
}

bool all_space(const std::string& s, size_t begin, size_t end) {
  if (begin >= end) return false;  // `\s+` needs at least one character
  return begin + space_run(s, begin) >= end;
}

// Python's unicode-escape decoding of a string literal body, after jinja2 turned every
// non-ASCII character into a \x, \u or \U escape first (encode("ascii", "backslashreplace")).
std::string unescape_string(const std::string& body, int line) {
  std::string ascii;
  size_t pos = 0;
  while (pos < body.size()) {
    uint32_t cp = next_code_point(body, pos);
    char buf[16];
    if (cp < 0x80) {
      ascii += static_cast<char>(cp);
    } else {
      if (cp < 0x100) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", cp);
      } else if (cp < 0x10000) {
        std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
      } else {
        std::snprintf(buf, sizeof(buf), "\\U%08x", cp);
      }
      ascii += buf;
    }
  }
  std::string out;
  for (size_t k = 0; k < ascii.size(); ++k) {
    char c = ascii[k];
    if (c != '\\' || k + 1 >= ascii.size()) {
      if (c == '\\') syntax_error(line, "\\ at end of string");
      out += c;
      continue;
    }
    char e = ascii[++k];
    switch (e) {
      case '\n':
        break;
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'v':
        out += '\v';
        break;
      case 'x':
      case 'u':
      case 'U': {
        size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        if (k + n >= ascii.size()) syntax_error(line, "truncated escape in string");
        uint32_t cp = 0;
        for (size_t d = 1; d <= n; ++d) {
          char h = ascii[k + d];
          if (!std::isxdigit(static_cast<unsigned char>(h))) {
            syntax_error(line, "truncated escape in string");
          }
          cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                   ? h - '0'
                                                   : std::tolower(h) - 'a' + 10);
        }
        if (cp > 0x10FFFF) syntax_error(line, "illegal Unicode character in string");
        k += n;
        append_utf8(out, cp);
        break;
      }
      case 'N':
        syntax_error(line, "\\N{...} escapes are not supported");
      default:
        if (e >= '0' && e <= '7') {
          uint32_t cp = static_cast<uint32_t>(e - '0');
          for (int d = 0;
               d < 2 && k + 1 < ascii.size() && ascii[k + 1] >= '0' && ascii[k + 1] <= '7'; ++d) {
            cp = cp * 8 + static_cast<uint32_t>(ascii[++k] - '0');
          }
          append_utf8(out, cp);
        } else {
          out += '\\';  // unknown escapes stay as they are
          out += e;
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(const std::string& src) : s_(normalize_source(src)) {}

  std::vector<Token> run() {
    while (pos_ < s_.size()) lex_root();
    toks_.push_back({Tok::kEof, "", line_});
    return std::move(toks_);
  }

 private:
  void emit(Tok type, std::string value, int line) {
    toks_.push_back({type, std::move(value), line});
  }

  void advance_to(size_t p) {
    for (size_t k = pos_; k < p && k < s_.size(); ++k) {
      if (s_[k] == '\n') ++line_;
    }
    pos_ = p;
  }

  // Text before a tag, with the tag's '-' / lstrip_blocks applied.
  void emit_text(size_t begin, size_t end, char sign, bool lstrip_ok) {
    size_t keep = end;
    if (sign == '-') {
      keep = rstrip_len(s_, begin, end);
    } else if (sign != '+' && lstrip_ok) {
      size_t nl = s_.rfind('\n', end == 0 ? 0 : end - 1);
      size_t l_pos = (nl == std::string::npos || nl < begin) ? begin : nl + 1;
      if ((l_pos > begin || line_starting_) && all_space(s_, l_pos, end)) keep = l_pos;
    }
    if (keep > begin) emit(Tok::kData, s_.substr(begin, keep - begin), line_);
    advance_to(end);
  }

  void lex_root() {
    size_t p = pos_;
    while (true) {
      p = s_.find('{', p);
      if (p == std::string::npos || p + 1 >= s_.size()) {
        emit(Tok::kData, s_.substr(pos_), line_);
        advance_to(s_.size());
        return;
      }
      char c = s_[p + 1];
      if (c == '%' || c == '{' || c == '#') break;
      ++p;
    }
    char kind = s_[p + 1];
    char sign = p + 2 < s_.size() && (s_[p + 2] == '-' || s_[p + 2] == '+') ? s_[p + 2] : 0;
    size_t after = p + 2 + (sign ? 1 : 0);
    if (kind == '%' && try_raw(p, sign, after)) return;
    emit_text(pos_, p, sign, kind != '{');
    int tag_line = line_;
    advance_to(after);
    line_starting_ = false;
    if (kind == '#') {
      lex_comment(tag_line);
    } else {
      emit(kind == '%' ? Tok::kBlockBegin : Tok::kVarBegin, "", tag_line);
      lex_tag(kind == '%');
    }
  }

  // {% raw %} ... {% endraw %}: returns false when the tag at p is not a raw tag.
  bool try_raw(size_t p, char sign, size_t after) {
    size_t q = after + space_run(s_, after);
    if (!starts_with(s_, q, "raw")) return false;
    q += 3;
    q += space_run(s_, q);
    size_t body;
    if (starts_with(s_, q, "-%}")) {
      body = q + 3 + space_run(s_, q + 3);
    } else if (starts_with(s_, q, "%}")) {
      body = q + 2;
    } else {
      return false;
    }
    emit_text(pos_, p, sign, true);
    advance_to(body);
    line_starting_ = body > 0 && s_[body - 1] == '\n';
    for (size_t e = s_.find("{%", body); e != std::string::npos; e = s_.find("{%", e + 1)) {
      char esign = e + 2 < s_.size() && (s_[e + 2] == '-' || s_[e + 2] == '+') ? s_[e + 2] : 0;
      size_t r = e + 2 + (esign ? 1 : 0);
      r += space_run(s_, r);
      if (!starts_with(s_, r, "endraw")) continue;
      r += 6;
      r += space_run(s_, r);
      size_t end;
      if (starts_with(s_, r, "+%}")) {
        end = r + 3;
      } else if (starts_with(s_, r, "-%}")) {
        end = r + 3 + space_run(s_, r + 3);
      } else if (starts_with(s_, r, "%}")) {
        end = r + 2 + (r + 2 < s_.size() && s_[r + 2] == '\n' ? 1 : 0);
      } else {
        continue;
      }
      emit_text(body, e, esign, true);
      advance_to(end);
      line_starting_ = s_[end - 1] == '\n';
      return true;
    }
    syntax_error(line_, "Missing end of raw directive");
  }

  void lex_comment(int tag_line) {
    for (size_t p = pos_; p < s_.size(); ++p) {
      size_t end = 0;
      if (starts_with(s_, p, "+#}")) {
        end = p + 3;
      } else if (starts_with(s_, p, "-#}")) {
        end = p + 3 + space_run(s_, p + 3);
      } else if (starts_with(s_, p, "#}")) {
        end = p + 2 + (p + 2 < s_.size() && s_[p + 2] == '\n' ? 1 : 0);
      }
      if (end) {
        advance_to(end);
        line_starting_ = s_[end - 1] == '\n';
        return;
      }
    }
    syntax_error(tag_line, "Missing end of comment tag");
  }

  // Tries the tag-end rule; returns true when the tag ended.
  bool try_tag_end(bool block) {
    size_t end = 0;
    if (block) {
      if (starts_with(s_, pos_, "+%}")) {
        end = pos_ + 3;
      } else if (starts_with(s_, pos_, "-%}")) {
        end = pos_ + 3 + space_run(s_, pos_ + 3);
      } else if (starts_with(s_, pos_, "%}")) {
        end = pos_ + 2 + (pos_ + 2 < s_.size() && s_[pos_ + 2] == '\n' ? 1 : 0);
      }
    } else {
      if (starts_with(s_, pos_, "-}}")) {
        end = pos_ + 3 + space_run(s_, pos_ + 3);
      } else if (starts_with(s_, pos_, "}}")) {
        end = pos_ + 2;
      }
    }
    if (!end) return false;
    emit(block ? Tok::kBlockEnd : Tok::kVarEnd, "", line_);
    advance_to(end);
    line_starting_ = s_[end - 1] == '\n';
    return true;
  }

  void lex_tag(bool block) {
    std::vector<char> balance;
    while (true) {
      if (pos_ >= s_.size()) {
        syntax_error(line_, block ? "unexpected end of template, expected '%}'"
                                  : "unexpected end of template, expected '}}'");
      }
      if (balance.empty() && try_tag_end(block)) return;
      size_t sp = space_run(s_, pos_);
      if (sp) {
        advance_to(pos_ + sp);
        continue;
      }
      char c = s_[pos_];
      if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number();
      } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos_;
        while (e < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[e])) || s_[e] == '_')) {
          ++e;
        }
        emit(Tok::kName, s_.substr(pos_, e - pos_), line_);
        advance_to(e);
      } else if (c == '\'' || c == '"') {
        lex_string(c);
      } else {
        lex_operator(balance);
      }
    }
  }

  void lex_string(char quote) {
    int start_line = line_;
    size_t p = pos_ + 1;
    while (p < s_.size() && s_[p] != quote) {
      if (s_[p] == '\\' && p + 1 < s_.size()) ++p;
      ++p;
    }
    if (p >= s_.size()) syntax_error(start_line, "unexpected end of string");
    emit(Tok::kString, unescape_string(s_.substr(pos_ + 1, p - pos_ - 1), start_line), start_line);
    advance_to(p + 1);
  }

  // digits with optional '_' separators between digits: (\d+_)*\d+
  size_t digit_run(size_t p) const {
    size_t e = p;
    while (e < s_.size() && std::isdigit(static_cast<unsigned char>(s_[e]))) {
      ++e;
      if (e + 1 < s_.size() && s_[e] == '_' &&
          std::isdigit(static_cast<unsigned char>(s_[e + 1]))) {
        ++e;
      }
    }
    return e;
  }

  void lex_number() {
    size_t e = digit_run(pos_);
    bool is_float = false;
    bool after_dot = pos_ > 0 && s_[pos_ - 1] == '.';
    size_t f = e;
    if (f + 1 < s_.size() && s_[f] == '.' && std::isdigit(static_cast<unsigned char>(s_[f + 1]))) {
      f = digit_run(f + 1);
      is_float = true;
    }
    if (f < s_.size() && (s_[f] == 'e' || s_[f] == 'E')) {
      size_t g = f + 1;
      if (g < s_.size() && (s_[g] == '+' || s_[g] == '-')) ++g;
      if (g < s_.size() && std::isdigit(static_cast<unsigned char>(s_[g]))) {
        f = digit_run(g);
        is_float = true;
      }
    }
    if (is_float && !after_dot) {
      std::string text;
      for (size_t k = pos_; k < f; ++k) {
        if (s_[k] != '_') text += s_[k];
      }
      emit(Tok::kFloat, text, line_);
      advance_to(f);
      return;
    }
    lex_integer();
  }

  void lex_integer() {
    size_t p = pos_;
    int base = 10;
    if (s_[p] == '0' && p + 1 < s_.size()) {
      char x = static_cast<char>(std::tolower(static_cast<unsigned char>(s_[p + 1])));
      base = x == 'b' ? 2 : x == 'o' ? 8 : x == 'x' ? 16 : 10;
    }
    std::string digits;
    size_t e = p;
    if (base != 10) {
      e = p + 2;
      while (e < s_.size()) {
        char d = s_[e];
        if (d == '_' && e + 1 < s_.size() && std::isxdigit(static_cast<unsigned char>(s_[e + 1]))) {
          ++e;
          continue;
        }
        int v = std::isdigit(static_cast<unsigned char>(d))    ? d - '0'
                : std::isxdigit(static_cast<unsigned char>(d)) ? std::tolower(d) - 'a' + 10
                                                               : 99;
        if (v >= base) break;
        digits += d;
        ++e;
      }
      if (digits.empty()) base = 10;  // "0x" without digits lexes as 0 then a name
    }
    if (base == 10) {
      if (s_[p] == '0') {  // 0(_?0)*
        e = p + 1;
        while (e < s_.size() &&
               (s_[e] == '0' || (s_[e] == '_' && e + 1 < s_.size() && s_[e + 1] == '0')))
          ++e;
        digits.assign(1, '0');
      } else {
        e = digit_run(p);
        for (size_t k = p; k < e; ++k) {
          if (s_[k] != '_') digits += s_[k];
        }
      }
    }
    errno = 0;
    char* endp = nullptr;
    unsigned long long v = std::strtoull(digits.c_str(), &endp, base);
    if (errno == ERANGE || v > static_cast<unsigned long long>(INT64_MAX)) {
      syntax_error(line_, "integer literal too large");
    }
    emit(Tok::kInt, std::to_string(v), line_);
    advance_to(e);
  }

  void lex_operator(std::vector<char>& balance) {
    static const char* kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : kTwo) {
      if (starts_with(s_, pos_, op)) {
        emit(Tok::kOp, op, line_);
        advance_to(pos_ + 2);
        return;
      }
    }
    char c = s_[pos_];
    static const std::string kOne = "+-/*%~[](){}<>=.:|,;";
    if (kOne.find(c) == std::string::npos) {
      size_t q = pos_;
      uint32_t cp = next_code_point(s_, q);
      std::string ch;
      append_utf8(ch, cp);
      syntax_error(line_, "unexpected char '" + ch + "' at " + std::to_string(pos_));
    }
    if (c == '(' || c == '[' || c == '{') {
      if (balance.size() > 1000) syntax_error(line_, "brackets nested too deeply");
      balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance.empty()) syntax_error(line_, std::string("unexpected '") + c + "'");
      if (balance.back() != c) {
        syntax_error(line_,
                     std::string("unexpected '") + c + "', expected '" + balance.back() + "'");
      }
      balance.pop_back();
    }
    emit(Tok::kOp, std::string(1, c), line_);
    advance_to(pos_ + 1);
  }

  std::string s_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> toks_;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source) {
  return Lexer(source).run();
}

}  // namespace jinx::jinja
