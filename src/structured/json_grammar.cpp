// JSON Schema -> GrammarNode graph (see json_grammar.h for the supported subset).
#include "structured/json_grammar.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

#include "core/check.h"

namespace jinx {

namespace {

using ojson = nlohmann::ordered_json;

// Bounds what a request can make us build (tries grow with properties squared).
constexpr size_t kMaxTrieNodes = size_t{1} << 22;
constexpr size_t kMaxNodes = size_t{1} << 20;

const std::set<std::string, std::less<>> kAnnotations = {
    "description", "title",      "default",  "examples",  "$schema", "$id",
    "$comment",    "deprecated", "readOnly", "writeOnly", "$defs",   "definitions"};
const std::set<std::string, std::less<>> kObjectKeywords = {"properties", "required",
                                                            "additionalProperties"};
const std::set<std::string, std::less<>> kArrayKeywords = {"items", "prefixItems", "minItems",
                                                           "maxItems"};
const std::set<std::string, std::less<>> kStringKeywords = {"minLength", "maxLength", "pattern",
                                                            "format"};
const std::set<std::string, std::less<>> kNumberKeywords = {"minimum", "maximum",
                                                            "exclusiveMinimum", "exclusiveMaximum"};
// Numbers are written with at most 18 integer digits: bounds beyond that bound nothing.
constexpr int64_t kMaxMagnitude = 999'999'999'999'999'999;
const std::set<std::string, std::less<>> kOtherKeywords = {"type",  "enum",  "const", "anyOf",
                                                           "oneOf", "allOf", "$ref"};

bool is_known(const std::string& k) {
  return kAnnotations.count(k) || kObjectKeywords.count(k) || kArrayKeywords.count(k) ||
         kStringKeywords.count(k) || kNumberKeywords.count(k) || kOtherKeywords.count(k);
}

bool has_any(const ojson& s, const std::set<std::string, std::less<>>& keys) {
  for (const auto& k : keys) {
    if (s.contains(k)) return true;
  }
  return false;
}

// Whether a JSON value has JSON Schema type `t`.
bool value_has_type(const ojson& v, std::string_view t) {
  if (t == "string") return v.is_string();
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "number") return v.is_number();
  if (t == "integer") {
    if (v.is_number_integer()) return true;
    if (!v.is_number_float()) return false;
    const double d = v.get<double>();
    return std::isfinite(d) && d == std::floor(d);
  }
  return false;
}

}  // namespace

// Builds one JsonGrammar; not reusable.
class SchemaCompiler {
 public:
  SchemaCompiler(const ojson& root, JsonGrammar* g) : root_(root), g_(g) {
    GrammarNode key;
    key.kind = NodeKind::kString;
    g_->key_string_ = add(std::move(key));
  }

  uint32_t compile(const ojson& s, const std::string& path) {
    if (s.is_boolean()) {
      if (!s.get<bool>()) fail(path, ": schema 'false' accepts no value");
      return any();
    }
    if (!s.is_object()) fail(path, ": a schema must be an object or a boolean");
    for (const auto& [k, v] : s.items()) {
      if (!is_known(k)) fail(path, ": unsupported JSON Schema keyword '", k, "'");
    }
    if (s.contains("allOf")) {
      // One schema in allOf (pydantic's way to describe a $ref'd field: {"allOf": [{"$ref":
      // ...}], "description": ...}) is that schema; an intersection of several is not built.
      only_annotations_beside(s, "allOf", path);
      const ojson& all = s["allOf"];
      if (!all.is_array() || all.size() != 1)
        fail(path, ": 'allOf' with other than one schema is not supported");
      return compile(all[0], path + "/allOf/0");
    }
    if (s.contains("enum") || s.contains("const")) return compile_literals(s, path);
    if (s.contains("anyOf") || s.contains("oneOf")) return compile_union(s, path);
    if (s.contains("$ref")) {
      only_annotations_beside(s, "$ref", path);
      const auto& ref = s["$ref"];
      if (!ref.is_string()) fail(path, ": $ref must be a string");
      return compile_ref(ref.get<std::string>(), path);
    }
    if (!s.contains("type")) return compile_typed(s, infer_type(s, path), path);
    const auto& type = s["type"];
    if (type.is_string()) return compile_typed(s, type.get<std::string>(), path);
    if (!type.is_array() || type.empty()) {
      fail(path, ": 'type' must be a string or a non-empty array of strings");
    }
    GrammarNode u;
    u.kind = NodeKind::kAnyOf;
    std::set<std::string> seen;
    for (const auto& t : type) {
      if (!t.is_string()) fail(path, ": 'type' entries must be strings");
      if (!seen.insert(t.get<std::string>()).second) fail(path, ": duplicate type ", t.dump());
      u.alts.push_back(compile_typed(s, t.get<std::string>(), path));
    }
    if (u.alts.size() == 1) return u.alts[0];
    return add(std::move(u));
  }

  void finish(uint32_t root) {
    g_->root_ = root;
    check_cycles();
  }

 private:
  uint32_t add(GrammarNode n) {
    if (g_->nodes_.size() >= kMaxNodes) fail("schema too large (", kMaxNodes, " nodes)");
    g_->nodes_.push_back(std::move(n));
    return static_cast<uint32_t>(g_->nodes_.size() - 1);
  }

  static void only_annotations_beside(const ojson& s, std::string_view key,
                                      const std::string& path) {
    for (const auto& [k, v] : s.items()) {
      if (k != key && !kAnnotations.count(k) && !(key == "anyOf" && k == "oneOf") &&
          !(key == "oneOf" && k == "anyOf")) {
        fail(path, ": keyword '", k, "' beside '", key, "' is not supported");
      }
    }
  }

  static std::string infer_type(const ojson& s, const std::string& path) {
    const bool obj = has_any(s, kObjectKeywords), arr = has_any(s, kArrayKeywords),
               str = has_any(s, kStringKeywords), num = has_any(s, kNumberKeywords);
    if (obj + arr + str + num > 1) fail(path, ": keywords of several types without 'type'");
    return obj ? "object" : arr ? "array" : str ? "string" : num ? "number" : "any";
  }

  static uint32_t read_count(const ojson& s, const char* key, uint32_t dflt,
                             const std::string& path) {
    if (!s.contains(key)) return dflt;
    const auto& v = s[key];
    double d = -1;
    if (v.is_number()) d = v.get<double>();
    if (!(d >= 0 && d < 2147483647.0 && d == std::floor(d))) {
      fail(path, ": '", key, "' must be a non-negative integer");
    }
    return static_cast<uint32_t>(d);
  }

  uint32_t any() {
    if (any_ >= 0) return static_cast<uint32_t>(any_);
    GrammarNode u;
    u.kind = NodeKind::kAnyOf;
    any_ = add(std::move(u));
    const auto self = static_cast<uint32_t>(any_);
    GrammarNode obj;
    obj.kind = NodeKind::kObject;
    obj.map_value = any_;
    GrammarNode arr;
    arr.kind = NodeKind::kArray;
    arr.items = any_;
    GrammarNode num;
    num.kind = NodeKind::kNumber;
    std::vector<uint32_t> alts = {add(std::move(obj)), add(std::move(arr)), g_->key_string_,
                                  add(std::move(num)), literal_node({"true", "false", "null"})};
    g_->nodes_[self].alts = std::move(alts);
    return self;
  }

  uint32_t compile_typed(const ojson& s, const std::string& type, const std::string& path) {
    if (type == "any") return any();
    if (type == "string") return compile_string(s, path);
    if (type == "object") return compile_object(s, path);
    if (type == "array") return compile_array(s, path);
    if (type == "boolean") return literal_node({"true", "false"});
    if (type == "null") return literal_node({"null"});
    if (type == "number" || type == "integer") {
      GrammarNode n;
      n.kind = type == "number" ? NodeKind::kNumber : NodeKind::kInteger;
      read_bounds(s, &n, path);
      return add(std::move(n));
    }
    fail(path, ": unknown type '", type, "'");
  }

  // One bound: a number, or draft 4's boolean exclusiveMinimum / exclusiveMaximum.
  struct Bound {
    bool set = false, open = false, integral = false;
    long double v = 0;
  };
  static Bound read_bound(const ojson& s, const char* key, const char* exclusive_key,
                          const std::string& path) {
    Bound b;
    auto value = [&](const ojson& v, const char* k) {
      if (!v.is_number()) fail(path, ": '", k, "' must be a number");
      if (v.is_number_integer()) {
        b.v = v.is_number_unsigned() ? static_cast<long double>(v.get<uint64_t>())
                                     : static_cast<long double>(v.get<int64_t>());
        b.integral = true;
      } else {
        const double d = v.get<double>();
        if (!std::isfinite(d)) fail(path, ": '", k, "' must be finite");
        b.v = d;
        b.integral = d == std::floor(d);
      }
      b.set = true;
    };
    if (s.contains(key)) value(s[key], key);
    if (s.contains(exclusive_key)) {
      const ojson& e = s[exclusive_key];
      if (e.is_boolean()) {
        if (e.get<bool>() && !b.set) fail(path, ": '", exclusive_key, "' true without '", key, "'");
        b.open = e.get<bool>();
      } else {
        const Bound plain = b;
        value(e, exclusive_key);
        b.open = true;
        // Both given: the tighter one counts (the exclusive one when they are equal).
        const bool lower = std::string_view(key) == "minimum";
        if (plain.set && (lower ? plain.v > b.v : plain.v < b.v)) b = plain;
      }
    }
    return b;
  }

  static void read_bounds(const ojson& s, GrammarNode* n, const std::string& path) {
    const bool integer = n->kind == NodeKind::kInteger;
    Bound lo = read_bound(s, "minimum", "exclusiveMinimum", path);
    Bound hi = read_bound(s, "maximum", "exclusiveMaximum", path);
    if (!lo.set && !hi.set) return;
    if (!integer && ((lo.set && !lo.integral) || (hi.set && !hi.integral))) {
      fail(path, ": bounds of a number must be integers (use type integer, or round them)");
    }
    constexpr auto kMax = static_cast<long double>(kMaxMagnitude);
    if (lo.set) {
      long double v = lo.v;
      if (integer) v = lo.open ? std::floor(v) + 1 : std::ceil(v);
      if (v > kMax) fail(path, ": minimum is beyond the 18 digits a number is written with");
      if (v >= -kMax) {  // else: no bound within reach
        n->has_lo = true;
        n->lo = static_cast<int64_t>(v);
        n->lo_open = !integer && lo.open;
      }
    }
    if (hi.set) {
      long double v = hi.v;
      if (integer) v = hi.open ? std::ceil(v) - 1 : std::floor(v);
      if (v < -kMax) fail(path, ": maximum is beyond the 18 digits a number is written with");
      if (v <= kMax) {
        n->has_hi = true;
        n->hi = static_cast<int64_t>(v);
        n->hi_open = !integer && hi.open;
      }
    }
    if (n->has_lo && n->has_hi &&
        (n->lo > n->hi || (n->lo == n->hi && (n->lo_open || n->hi_open)))) {
      fail(path, ": no ", integer ? "integer" : "number", " lies within the bounds");
    }
    n->bounded = n->has_lo || n->has_hi;
  }

  uint32_t compile_string(const ojson& s, const std::string& path) {
    GrammarNode n;
    n.kind = NodeKind::kString;
    n.min_len = read_count(s, "minLength", 0, path);
    n.max_len = read_count(s, "maxLength", kUnbounded, path);
    if (n.min_len > n.max_len) fail(path, ": minLength > maxLength");
    std::string_view format_regex;
    if (s.contains("format")) {
      if (!s["format"].is_string()) fail(path, ": 'format' must be a string");
      format_regex = format_pattern(s["format"].get<std::string>());
    }
    try {
      if (s.contains("pattern")) {
        if (!s["pattern"].is_string()) fail(path, ": 'pattern' must be a string");
        if (!format_regex.empty()) fail("both 'pattern' and 'format' are not supported");
        n.dfa = ByteDfa::for_json_pattern(s["pattern"].get<std::string>());
      } else if (!format_regex.empty()) {
        n.dfa = ByteDfa::from_regex(format_regex, ByteDfa::json_string_bytes());
      }
    } catch (const Error& e) {
      fail(path, ": ", e.what());
    }
    return add(std::move(n));
  }

  // The formats generation follows, as full-match regexes that only accept texts that
  // jsonschema's format checker accepts (a date never has year 0, Feb 29 or day 31 of a short month;
  // times have a UTC offset, as RFC 3339 wants; host names stay within 253 bytes). Others:
  // empty (an annotation only).
  static std::string_view format_pattern(std::string_view format) {
    static constexpr std::string_view kDate =
        R"((?:[1-9]\d{3}|0[1-9]\d{2}|00[1-9]\d|000[1-9])-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8])))";
    static constexpr std::string_view kTime =
        R"((?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d))";
    static const std::string kDateTime = std::string(kDate) + "T" + std::string(kTime);
    if (format == "date") return kDate;
    if (format == "time") return kTime;
    if (format == "date-time") return kDateTime;
    if (format == "uuid")
      return R"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})";
    if (format == "email") return R"([A-Za-z0-9._%+-]{1,32}@[A-Za-z0-9-]{1,24}(?:\.[A-Za-z0-9-]{1,24}){1,3})";
    if (format == "ipv4")
      return R"((?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d))";
    if (format == "hostname")
      return R"([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?){0,2})";
    return {};
  }

  uint32_t compile_object(const ojson& s, const std::string& path) {
    GrammarNode n;
    n.kind = NodeKind::kObject;
    const ojson* extra = s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
    const bool closed = extra && extra->is_boolean() && !extra->get<bool>();
    if (extra && !extra->is_boolean() && !extra->is_object()) {
      fail(path, ": additionalProperties must be a boolean or a schema");
    }
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) fail(path, ": 'required' must be an array");
      for (const auto& r : s["required"]) {
        if (!r.is_string()) fail(path, ": 'required' entries must be strings");
        if (!required.insert(r.get<std::string>()).second) {
          fail(path, ": duplicate required property ", r.dump());
        }
      }
    }
    std::set<std::string> listed;
    if (s.contains("properties")) {
      if (!s["properties"].is_object()) fail(path, ": 'properties' must be an object");
      for (const auto& [k, v] : s["properties"].items()) {
        listed.insert(k);
        if (v.is_boolean() && !v.get<bool>()) {
          if (required.count(k)) fail(path, ": required property '", k, "' has schema false");
          continue;
        }
        n.props.push_back(
            {ojson(k).dump(), compile(v, path + "/properties/" + k), required.count(k) > 0});
      }
    }
    for (const auto& r : required) {  // required but not described: any allowed value
      if (listed.count(r)) continue;
      if (closed)
        fail(path, ": required property '", r, "' is not allowed by additionalProperties");
      const uint32_t v = extra ? compile(*extra, path + "/additionalProperties") : any();
      n.props.push_back({ojson(r).dump(), v, true});
    }
    if (n.props.empty() && !closed && listed.empty()) {
      n.map_value =
          static_cast<int32_t>(extra ? compile(*extra, path + "/additionalProperties") : any());
    }
    build_key_tries(&n);
    return add(std::move(n));
  }

  void build_key_tries(GrammarNode* n) {
    const size_t np = n->props.size();
    n->required_from.assign(np + 1, 0);
    for (size_t i = np; i-- > 0;) {
      n->required_from[i] = n->props[i].required || n->required_from[i + 1];
    }
    for (size_t i = 0; i < np; ++i) {
      std::vector<std::pair<std::string, int32_t>> keys;
      for (size_t j = i; j < np; ++j) {
        keys.emplace_back(n->props[j].key, static_cast<int32_t>(j));
        if (n->props[j].required) break;
      }
      n->key_roots.push_back(build_trie(keys));
    }
  }

  uint32_t compile_array(const ojson& s, const std::string& path) {
    GrammarNode n;
    n.kind = NodeKind::kArray;
    if (s.contains("prefixItems")) {
      const auto& p = s["prefixItems"];
      if (!p.is_array()) fail(path, ": 'prefixItems' must be an array");
      for (size_t i = 0; i < p.size(); ++i) {
        n.prefix.push_back(compile(p[i], path + "/prefixItems/" + std::to_string(i)));
      }
    }
    if (!s.contains("items")) {
      n.items = static_cast<int32_t>(any());
    } else {
      const auto& it = s["items"];
      if (it.is_array()) fail(path, ": 'items' as an array is not supported (use prefixItems)");
      if (!(it.is_boolean() && !it.get<bool>())) {
        n.items = static_cast<int32_t>(compile(it, path + "/items"));
      }
    }
    n.min_items = read_count(s, "minItems", 0, path);
    n.max_items = read_count(s, "maxItems", kUnbounded, path);
    if (n.min_items > n.max_items) fail(path, ": minItems > maxItems");
    if (n.items < 0 && n.min_items > n.prefix.size()) {
      fail(path, ": minItems ", n.min_items, " needs more items than 'items: false' allows");
    }
    return add(std::move(n));
  }

  uint32_t compile_union(const ojson& s, const std::string& path) {
    const char* key = s.contains("anyOf") ? "anyOf" : "oneOf";
    only_annotations_beside(s, key, path);
    if (s.contains("anyOf") && s.contains("oneOf")) fail(path, ": both anyOf and oneOf");
    const auto& list = s[key];
    if (!list.is_array() || list.empty()) fail(path, ": '", key, "' must be a non-empty array");
    GrammarNode u;
    u.kind = NodeKind::kAnyOf;
    for (size_t i = 0; i < list.size(); ++i) {
      if (list[i].is_boolean() && !list[i].get<bool>()) continue;
      u.alts.push_back(compile(list[i], path + "/" + key + "/" + std::to_string(i)));
    }
    if (u.alts.empty()) fail(path, ": every '", key, "' alternative is false");
    if (u.alts.size() == 1) return u.alts[0];
    return add(std::move(u));
  }

  uint32_t compile_literals(const ojson& s, const std::string& path) {
    std::vector<ojson> values;
    for (const auto& [k, v] : s.items()) {
      if (k != "enum" && k != "const" && k != "type" && !kAnnotations.count(k)) {
        fail(path, ": keyword '", k, "' beside enum/const is not supported");
      }
    }
    if (s.contains("enum")) {
      if (!s["enum"].is_array() || s["enum"].empty()) {
        fail(path, ": 'enum' must be a non-empty array");
      }
      for (const auto& v : s["enum"]) values.push_back(v);
    }
    if (s.contains("const")) {
      if (s.contains("enum") &&
          std::find(values.begin(), values.end(), s["const"]) == values.end()) {
        fail(path, ": 'const' is not among the 'enum' values");
      }
      values = {s["const"]};
    }
    if (s.contains("type")) {
      std::vector<std::string> types;
      const auto& t = s["type"];
      if (t.is_string()) types.push_back(t.get<std::string>());
      if (t.is_array()) {
        for (const auto& x : t) {
          if (x.is_string()) types.push_back(x.get<std::string>());
        }
      }
      if (types.empty()) fail(path, ": 'type' must be a string or an array of strings");
      std::erase_if(values, [&](const ojson& v) {
        return std::none_of(types.begin(), types.end(),
                            [&](const std::string& ty) { return value_has_type(v, ty); });
      });
      if (values.empty()) fail(path, ": no enum/const value has the schema's type");
    }
    std::vector<std::string> texts;
    for (const auto& v : values) texts.push_back(v.dump());
    return literal_node(texts);
  }

  uint32_t literal_node(const std::vector<std::string>& texts) {
    std::vector<std::pair<std::string, int32_t>> keys;
    for (size_t i = 0; i < texts.size(); ++i) keys.emplace_back(texts[i], static_cast<int32_t>(i));
    GrammarNode n;
    n.kind = NodeKind::kLiteral;
    n.trie_root = build_trie(keys);
    return add(std::move(n));
  }

  uint32_t compile_ref(const std::string& ref, const std::string& path) {
    if (auto it = refs_.find(ref); it != refs_.end()) return it->second;
    if (ref.empty() || ref[0] != '#') fail(path, ": only local $ref (\"#...\") is supported");
    const ojson* target = nullptr;
    try {
      const ojson::json_pointer ptr(ref.substr(1));
      if (root_.contains(ptr)) target = &root_.at(ptr);
    } catch (const nlohmann::json::exception&) {
      fail(path, ": bad $ref '", ref, "'");
    }
    if (!target) fail(path, ": $ref '", ref, "' does not resolve");
    GrammarNode alias;
    alias.kind = NodeKind::kAlias;
    const uint32_t id = add(std::move(alias));
    refs_[ref] = id;
    const uint32_t t = compile(*target, ref);
    g_->nodes_[id].target = t;
    return id;
  }

  // Trie over (text, value) pairs, appended to the grammar's flat trie arrays.
  uint32_t build_trie(const std::vector<std::pair<std::string, int32_t>>& keys) {
    struct Tmp {
      std::map<uint8_t, size_t> kids;
      int32_t value = -1;
    };
    std::vector<Tmp> tmp(1);
    for (const auto& [text, value] : keys) {
      size_t cur = 0;
      for (unsigned char c : text) {
        auto it = tmp[cur].kids.find(c);
        if (it == tmp[cur].kids.end()) {
          tmp.emplace_back();
          it = tmp[cur].kids.emplace(c, tmp.size() - 1).first;
        }
        cur = it->second;
      }
      if (tmp[cur].value < 0) tmp[cur].value = value;
    }
    if (g_->trie_nodes_.size() + tmp.size() > kMaxTrieNodes) fail("schema too large (keys)");
    // Flatten: node ids in creation order, each node's edges contiguous.
    const auto base = static_cast<uint32_t>(g_->trie_nodes_.size());
    for (const Tmp& t : tmp) {
      TrieNode n;
      n.first_edge = static_cast<uint32_t>(g_->trie_edges_.size());
      n.n_edges = static_cast<uint32_t>(t.kids.size());
      n.value = t.value;
      for (const auto& [c, k] : t.kids) {
        g_->trie_edges_.push_back({c, base + static_cast<uint32_t>(k)});
      }
      g_->trie_nodes_.push_back(n);
    }
    return base;
  }

  // A cycle through aliases and unions only would let the matcher expand forever without
  // consuming a byte (e.g. {"$ref": "#"} or {"anyOf": [{"$ref": "#"}]}).
  void check_cycles() {
    const auto& nodes = g_->nodes_;
    std::vector<uint8_t> color(nodes.size(), 0);  // 0 new, 1 on path, 2 done
    auto visit = [&](auto&& self, uint32_t id) -> void {
      if (color[id] == 2) return;
      if (color[id] == 1) fail("schema recursion through $ref/anyOf that never nests a value");
      color[id] = 1;
      const GrammarNode& n = nodes[id];
      if (n.kind == NodeKind::kAlias) self(self, n.target);
      if (n.kind == NodeKind::kAnyOf) {
        for (uint32_t a : n.alts) self(self, a);
      }
      color[id] = 2;
    };
    for (uint32_t i = 0; i < nodes.size(); ++i) visit(visit, i);
  }

  const ojson& root_;
  JsonGrammar* g_;
  int64_t any_ = -1;
  std::unordered_map<std::string, uint32_t> refs_;
};

std::shared_ptr<const JsonGrammar> JsonGrammar::any_object() {
  return from_schema(ojson{{"type", "object"}});
}

std::shared_ptr<const JsonGrammar> JsonGrammar::from_schema(const nlohmann::ordered_json& schema) {
  auto g = std::make_shared<JsonGrammar>();
  try {
    SchemaCompiler c(schema, g.get());
    c.finish(c.compile(schema, "schema"));
  } catch (const nlohmann::json::exception& e) {
    fail("bad JSON schema: ", e.what());
  }
  return g;
}

std::shared_ptr<const JsonGrammar> JsonGrammar::from_schema(const nlohmann::json& schema) {
  ojson o;
  try {
    o = ojson::parse(schema.dump());
  } catch (const nlohmann::json::exception& e) {
    fail("bad JSON schema: ", e.what());
  }
  return from_schema(o);
}

std::shared_ptr<const JsonGrammar> JsonGrammar::from_schema_text(std::string_view schema_json) {
  ojson o;
  try {
    o = ojson::parse(schema_json);
  } catch (const nlohmann::json::exception& e) {
    fail("bad JSON schema: ", e.what());
  }
  return from_schema(o);
}

}  // namespace jinx
