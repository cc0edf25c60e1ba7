// Python's binary arithmetic on template values: + - * / // % ** (and % string formatting).
#include <cmath>
#include <cstdio>
#include <limits>

#include "tokenizer/jinja_eval.h"

namespace jinx::jinja {
namespace {

[[noreturn]] void unsupported(const std::string& op, const Value& a, const Value& b) {
  auto tn = [](const Value& v) {
    std::string t = type_name(v);
    return v.kind == Kind::kNone ? std::string("NoneType") : t.substr(0, t.find(' '));
  };
  if (op == "+" && a.is_string()) fail("can only concatenate str (not \"", tn(b), "\") to str");
  if (op == "+" && a.is_list()) fail("can only concatenate list (not \"", tn(b), "\") to list");
  fail("unsupported operand type(s) for ", op, ": '", tn(a), "' and '", tn(b), "'");
}

void check_overflow(bool overflow) {
  if (overflow) fail("integer overflow (values are limited to 64 bits)");
}

double py_fmod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

Value int_pow(int64_t base, int64_t exp) {
  if (exp < 0) return Value::number(std::pow(static_cast<double>(base), static_cast<double>(exp)));
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) check_overflow(__builtin_mul_overflow(result, base, &result));
    exp >>= 1;
    if (exp) check_overflow(__builtin_mul_overflow(base, base, &base));
  }
  return Value::integer(result);
}

// printf-style formatting: "%s and %d" % (a, b). Supports %s %r %d %i %f %e %g %x %%.
std::string percent_format(const std::string& fmt, const Value& args) {
  std::vector<Value> list;
  if (args.is_list() && args.list->is_tuple) {
    list = args.list->items;
  } else {
    list.push_back(args);
  }
  std::string out;
  size_t next = 0;
  for (size_t k = 0; k < fmt.size(); ++k) {
    if (fmt[k] != '%') {
      out += fmt[k];
      continue;
    }
    ++k;
    const Value* keyed = nullptr;
    if (k < fmt.size() && fmt[k] == '(') {
      size_t close = fmt.find(')', k);
      if (close == std::string::npos) fail("incomplete format key");
      if (!args.is_dict()) fail("format requires a mapping");
      keyed = args.dict->find(fmt.substr(k + 1, close - k - 1));
      if (!keyed) fail("KeyError: '", fmt.substr(k + 1, close - k - 1), "'");
      k = close + 1;
    }
    size_t spec_begin = k - 1;
    while (k < fmt.size() && std::string("-+ #0123456789.").find(fmt[k]) != std::string::npos) ++k;
    if (k >= fmt.size()) fail("incomplete format");
    char conv = fmt[k];
    if (conv == '%') {
      out += '%';
      continue;
    }
    if (!keyed && next >= list.size()) fail("not enough arguments for format string");
    const Value& v = keyed ? *keyed : list[next++];
    std::string flags = str("%", fmt.substr(spec_begin + 1, k - spec_begin - 1));
    char buf[512];
    if (conv == 's' || conv == 'r') {
      std::string s = conv == 's' ? to_str(v) : repr(v);
      if (flags == "%") {
        out += s;
      } else {
        std::snprintf(buf, sizeof(buf), (flags + "s").c_str(), s.c_str());
        out += buf;
      }
    } else if (conv == 'd' || conv == 'i' || conv == 'x' || conv == 'X' || conv == 'o') {
      if (!v.is_number()) fail("%", conv, " format: a real number is required, not ", type_name(v));
      long long n = v.kind == Kind::kFloat ? static_cast<long long>(v.f) : v.as_int();
      std::snprintf(buf, sizeof(buf), (flags + "ll" + (conv == 'i' ? 'd' : conv)).c_str(), n);
      out += buf;
    } else if (conv == 'f' || conv == 'F' || conv == 'e' || conv == 'E' || conv == 'g' ||
               conv == 'G') {
      if (!v.is_number()) fail("must be real number, not ", type_name(v));
      std::snprintf(buf, sizeof(buf), (flags + conv).c_str(), v.as_double());
      out += buf;
    } else {
      fail("unsupported format character '", std::string(1, conv), "'");
    }
  }
  if (next < list.size() && !args.is_dict()) {
    fail("not all arguments converted during string formatting");
  }
  return out;
}

Value repeat(const Value& seq, int64_t n, size_t max_bytes) {
  if (n <= 0) return seq.is_string() ? Value::string("") : Value::make_list({}, seq.list->is_tuple);
  if (seq.is_string()) {
    if (seq.s.size() * static_cast<uint64_t>(n) > max_bytes) fail("string size limit exceeded");
    std::string out;
    out.reserve(seq.s.size() * n);
    for (int64_t k = 0; k < n; ++k) out += seq.s;
    return Value::string(std::move(out));
  }
  if (seq.list->items.size() * static_cast<uint64_t>(n) > max_bytes / 16)
    fail("list size limit exceeded");
  std::vector<Value> out;
  for (int64_t k = 0; k < n; ++k)
    out.insert(out.end(), seq.list->items.begin(), seq.list->items.end());
  return Value::make_list(std::move(out), seq.list->is_tuple);
}

}  // namespace

Value binary_op(const std::string& op, const Value& a, const Value& b, size_t max_bytes) {
  bool nums = a.is_number() && b.is_number();
  bool ints = a.is_integral() && b.is_integral();
  if (op == "+") {
    if (ints) {
      int64_t r;
      check_overflow(__builtin_add_overflow(a.as_int(), b.as_int(), &r));
      return Value::integer(r);
    }
    if (nums) return Value::number(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      if (a.s.size() + b.s.size() > max_bytes) fail("string size limit exceeded");
      return Value::string(a.s + b.s);
    }
    if (a.is_list() && b.is_list() && a.list->is_tuple == b.list->is_tuple &&
        !a.list->is_generator && !b.list->is_generator) {
      if (a.list->items.size() + b.list->items.size() > max_bytes / 16)
        fail("list size limit exceeded");
      std::vector<Value> items = a.list->items;
      items.insert(items.end(), b.list->items.begin(), b.list->items.end());
      return Value::make_list(std::move(items), a.list->is_tuple);
    }
    unsupported(op, a, b);
  }
  if (op == "-") {
    if (ints) {
      int64_t r;
      check_overflow(__builtin_sub_overflow(a.as_int(), b.as_int(), &r));
      return Value::integer(r);
    }
    if (nums) return Value::number(a.as_double() - b.as_double());
    unsupported(op, a, b);
  }
  if (op == "*") {
    if (ints) {
      int64_t r;
      check_overflow(__builtin_mul_overflow(a.as_int(), b.as_int(), &r));
      return Value::integer(r);
    }
    if (nums) return Value::number(a.as_double() * b.as_double());
    if ((a.is_string() || (a.is_list() && !a.list->is_generator)) && b.is_integral()) {
      return repeat(a, b.as_int(), max_bytes);
    }
    if ((b.is_string() || (b.is_list() && !b.list->is_generator)) && a.is_integral()) {
      return repeat(b, a.as_int(), max_bytes);
    }
    unsupported(op, a, b);
  }
  if (op == "/") {
    if (!nums) unsupported(op, a, b);
    if (b.as_double() == 0) fail("division by zero");
    return Value::number(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (op == "%" && a.is_string()) return Value::string(percent_format(a.s, b));
    if (!nums) unsupported(op, a, b);
    if (ints) {
      int64_t x = a.as_int();
      int64_t y = b.as_int();
      if (y == 0)
        fail(op == "//" ? "integer division or modulo by zero" : "integer modulo by zero");
      if (x == INT64_MIN && y == -1) fail("integer overflow");
      int64_t q = x / y;
      int64_t m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        --q;
        m += y;
      }
      return Value::integer(op == "//" ? q : m);
    }
    double x = a.as_double();
    double y = b.as_double();
    if (y == 0) fail("float floor division by zero");
    if (op == "%") return Value::number(py_fmod(x, y));
    return Value::number(std::floor(x / y));
  }
  if (op == "**") {
    if (ints) return int_pow(a.as_int(), b.as_int());
    if (nums) return Value::number(std::pow(a.as_double(), b.as_double()));
    unsupported(op, a, b);
  }
  fail("unknown operator ", op);
}

}  // namespace jinx::jinja
