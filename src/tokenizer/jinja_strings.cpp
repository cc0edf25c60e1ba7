#include "tokenizer/jinja_strings.h"

#include <algorithm>

#include "core/check.h"
#include "tokenizer/jinja_value.h"

namespace jinx::jinja {
namespace {

uint32_t upper_simple(uint32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0x80) return c;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c == 0xB5) return 0x39C;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x131) return 'I';
    if (c == 0x17F) return 'S';
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 0) ? c - 1 : c;
    if (c == 0x130 || c == 0x138 || c == 0x149 || c == 0x178) return c;
    return (c % 2 == 1) ? c - 1 : c;
  }
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
  if (c == 0x3C2) return 0x3A3;
  if (c == 0x3AC) return 0x386;
  if (c >= 0x3AD && c <= 0x3AF) return c - 37;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 63;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  if (c >= 0x460 && c <= 0x4FF && c != 0x482 && !(c >= 0x483 && c <= 0x489)) {
    if (c >= 0x4C1 && c <= 0x4CE) return (c % 2 == 0) ? c - 1 : c;
    if (c == 0x4CF) return 0x4C0;
    return (c % 2 == 1) ? c - 1 : c;
  }
  if (c >= 0xFF41 && c <= 0xFF5A) return c - 32;
  return c;
}

uint32_t lower_simple(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0x80) return c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c == 0x178) return 0xFF;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x130 || c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17F) return c;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 1) ? c + 1 : c;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  if (c >= 0x460 && c <= 0x4FF && c != 0x482 && !(c >= 0x483 && c <= 0x489)) {
    if (c >= 0x4C1 && c <= 0x4CE) return (c % 2 == 1) ? c + 1 : c;
    if (c == 0x4C0) return 0x4CF;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
  return c;
}

void append_upper(std::string& out, uint32_t c) {
  if (c == 0xDF) {  // sharp s
    out += "SS";
    return;
  }
  if (c == 0x149) {
    append_utf8(out, 0x2BC);
    out += 'N';
    return;
  }
  append_utf8(out, upper_simple(c));
}

void append_lower(std::string& out, uint32_t c) {
  if (c == 0x130) {  // I with dot above -> i + combining dot
    out += 'i';
    append_utf8(out, 0x307);
    return;
  }
  append_utf8(out, lower_simple(c));
}

bool is_cased(uint32_t c) {
  return py_is_lower(c) || py_is_upper(c);
}

bool in_chars(uint32_t cp, const std::vector<uint32_t>& set) {
  return std::find(set.begin(), set.end(), cp) != set.end();
}

}  // namespace

bool py_is_lower(uint32_t c) {
  return upper_simple(c) != c || c == 0xDF || c == 0x138 || c == 0x149;
}
bool py_is_upper(uint32_t c) {
  return lower_simple(c) != c || c == 0x130;
}

std::string py_strip(std::string_view s, const std::optional<std::string>& chars, StripSide side) {
  std::vector<uint32_t> cps = to_code_points(s);
  std::vector<uint32_t> set;
  if (chars) set = to_code_points(*chars);
  auto strip_it = [&](uint32_t cp) { return chars ? in_chars(cp, set) : is_py_space(cp); };
  size_t b = 0;
  size_t e = cps.size();
  if (side != StripSide::kRight) {
    while (b < e && strip_it(cps[b])) ++b;
  }
  if (side != StripSide::kLeft) {
    while (e > b && strip_it(cps[e - 1])) --e;
  }
  return from_code_points(cps, b, e);
}

std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep,
                                  int64_t maxsplit, bool from_right) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) fail("empty separator");
    if (!from_right) {
      size_t pos = 0;
      while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
        size_t f = s.find(*sep, pos);
        if (f == std::string_view::npos) break;
        out.emplace_back(s.substr(pos, f - pos));
        pos = f + sep->size();
      }
      out.emplace_back(s.substr(pos));
      return out;
    }
    size_t end = s.size();
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      size_t f = s.rfind(*sep, end - sep->size());
      if (f == std::string_view::npos) break;
      out.emplace_back(s.substr(f + sep->size(), end - f - sep->size()));
      end = f;
    }
    out.emplace_back(s.substr(0, end));
    std::reverse(out.begin(), out.end());
    return out;
  }
  std::vector<uint32_t> cps = to_code_points(s);
  std::vector<std::pair<size_t, size_t>> words;  // [begin, end) code point ranges
  size_t k = 0;
  while (k < cps.size()) {
    while (k < cps.size() && is_py_space(cps[k])) ++k;
    if (k >= cps.size()) break;
    size_t b = k;
    while (k < cps.size() && !is_py_space(cps[k])) ++k;
    words.emplace_back(b, k);
  }
  if (maxsplit >= 0 && static_cast<int64_t>(words.size()) > maxsplit) {
    if (!from_right) {
      size_t keep = static_cast<size_t>(maxsplit);
      size_t rest_begin = words[keep].first;
      size_t rest_end = cps.size();  // the remainder keeps its trailing whitespace
      words.resize(keep);
      words.emplace_back(rest_begin, rest_end);
    } else {
      size_t drop = words.size() - static_cast<size_t>(maxsplit);
      size_t rest_end = words[drop - 1].second;
      size_t rest_begin = 0;  // the remainder keeps its leading whitespace
      words.erase(words.begin(), words.begin() + static_cast<long>(drop));
      words.insert(words.begin(), {rest_begin, rest_end});
    }
  }
  for (const auto& [b, e] : words) out.push_back(from_code_points(cps, b, e));
  return out;
}

std::vector<std::string> py_splitlines(std::string_view s, bool keepends) {
  std::vector<uint32_t> cps = to_code_points(s);
  std::vector<std::string> out;
  size_t b = 0;
  size_t k = 0;
  while (k < cps.size()) {
    uint32_t c = cps[k];
    bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D ||
               c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) {
      ++k;
      continue;
    }
    size_t e = k + 1;
    if (c == '\r' && e < cps.size() && cps[e] == '\n') ++e;
    out.push_back(from_code_points(cps, b, keepends ? e : k));
    b = k = e;
  }
  if (b < cps.size()) out.push_back(from_code_points(cps, b, cps.size()));
  return out;
}

std::string py_lower(std::string_view s) {
  std::string out;
  std::vector<uint32_t> cps = to_code_points(s);
  for (size_t k = 0; k < cps.size(); ++k) {
    if (cps[k] == 0x3A3) {  // capital sigma: final form after a letter that ends a word
      bool after_cased = k > 0 && is_cased(cps[k - 1]);
      bool before_cased = k + 1 < cps.size() && is_cased(cps[k + 1]);
      append_utf8(out, after_cased && !before_cased ? 0x3C2 : 0x3C3);
      continue;
    }
    append_lower(out, cps[k]);
  }
  return out;
}

std::string py_upper(std::string_view s) {
  std::string out;
  size_t pos = 0;
  while (pos < s.size()) append_upper(out, next_code_point(s, pos));
  return out;
}

std::string py_title(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  size_t pos = 0;
  while (pos < s.size()) {
    uint32_t c = next_code_point(s, pos);
    if (prev_cased) {
      append_lower(out, c);
    } else {
      append_upper(out, c);
    }
    prev_cased = is_cased(c);
  }
  return out;
}

std::string py_capitalize(std::string_view s) {
  std::string out;
  size_t pos = 0;
  bool first = true;
  while (pos < s.size()) {
    uint32_t c = next_code_point(s, pos);
    if (first) {
      append_upper(out, c);
    } else {
      append_lower(out, c);
    }
    first = false;
  }
  return out;
}

std::string jinja_title(std::string_view s) {
  // re.split(r"([-\s\(\{\[\<]+)") then item[0].upper() + item[1:].lower() for each piece.
  auto is_sep = [](uint32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_py_space(c);
  };
  std::vector<uint32_t> cps = to_code_points(s);
  std::string out;
  size_t k = 0;
  while (k < cps.size()) {
    size_t b = k;
    bool sep = is_sep(cps[k]);
    while (k < cps.size() && is_sep(cps[k]) == sep) ++k;
    if (sep) {
      out += from_code_points(cps, b, k);
    } else {
      append_upper(out, cps[b]);
      for (size_t j = b + 1; j < k; ++j) append_lower(out, cps[j]);
    }
  }
  return out;
}

int64_t py_find(std::string_view s, std::string_view sub, bool from_right) {
  size_t f = from_right ? s.rfind(sub) : s.find(sub);
  if (f == std::string_view::npos) return -1;
  return static_cast<int64_t>(code_point_count(s.substr(0, f)));
}

int64_t py_count(std::string_view s, std::string_view sub) {
  if (sub.empty()) return static_cast<int64_t>(code_point_count(s)) + 1;
  int64_t n = 0;
  for (size_t f = s.find(sub); f != std::string_view::npos; f = s.find(sub, f + sub.size())) ++n;
  return n;
}

std::string py_replace(std::string_view s, std::string_view old, std::string_view repl,
                       int64_t count, size_t max_bytes) {
  std::string out;
  auto add = [&](std::string_view piece) {
    if (out.size() + piece.size() > max_bytes) fail("string size limit exceeded");
    out += piece;
  };
  int64_t done = 0;
  if (old.empty()) {
    size_t pos = 0;
    while (pos <= s.size()) {
      if (count < 0 || done < count) {
        add(repl);
        ++done;
      } else {
        add(s.substr(pos));
        break;
      }
      if (pos == s.size()) break;
      size_t start = pos;
      next_code_point(s, pos);
      add(s.substr(start, pos - start));
    }
    return out;
  }
  size_t pos = 0;
  while (count < 0 || done < count) {
    size_t f = s.find(old, pos);
    if (f == std::string_view::npos) break;
    add(s.substr(pos, f - pos));
    add(repl);
    pos = f + old.size();
    ++done;
  }
  add(s.substr(pos));
  return out;
}

}  // namespace jinx::jinja
