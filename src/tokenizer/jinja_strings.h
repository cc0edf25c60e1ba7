// Python str semantics the interpreter needs: strip/split on Unicode whitespace, case mapping,
// title/capitalize, and find/count/replace counted in code points.
//
// Case mapping covers ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic and fullwidth Latin
// (Python maps every Unicode letter; characters outside these ranges are left unchanged).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace jinx::jinja {

enum class StripSide { kLeft, kRight, kBoth };
// Python's str.strip/lstrip/rstrip; chars = nullopt strips whitespace.
std::string py_strip(std::string_view s, const std::optional<std::string>& chars, StripSide side);
// Python's str.split(sep, maxsplit) / rsplit; sep = nullopt splits on whitespace runs.
std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep,
                                  int64_t maxsplit, bool from_right);
std::vector<std::string> py_splitlines(std::string_view s, bool keepends);
std::string py_lower(std::string_view s);
std::string py_upper(std::string_view s);
std::string py_title(std::string_view s);       // str.title()
std::string py_capitalize(std::string_view s);  // str.capitalize()
std::string jinja_title(std::string_view s);    // jinja2's title filter
// Code point index of the first (or last) occurrence, or -1.
int64_t py_find(std::string_view s, std::string_view sub, bool from_right);
int64_t py_count(std::string_view s, std::string_view sub);
std::string py_replace(std::string_view s, std::string_view old, std::string_view repl,
                       int64_t count, size_t max_bytes);
bool py_is_lower(uint32_t cp);
bool py_is_upper(uint32_t cp);

}  // namespace jinx::jinja
