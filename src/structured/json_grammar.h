// A JSON Schema compiled into a small graph of value nodes that the byte-level matcher
// (json_matcher.h) walks with a pushdown stack.
//
// Supported subset (OpenAI strict mode and typical tool-parameter schemas):
//   type (string, number, integer, boolean, null, object, array, or a list of them),
//   properties, required, additionalProperties (false / true / schema), items (schema or
//   bool), prefixItems, minItems, maxItems, enum, const, anyOf, oneOf (treated as anyOf),
//   allOf of one schema, $ref to "#", "#/$defs/..." or "#/definitions/..." (recursion
//   allowed), minLength,
//   maxLength, minimum / maximum / exclusiveMinimum / exclusiveMaximum (any value for an
//   integer; integer values for a number, whose generated form then has no exponent),
//   pattern (ECMA-262 search semantics; the regex syntax regex_grammar.h reads), format
//   date, time, date-time, uuid, email, ipv4, hostname (other formats are annotations, as
//   JSON Schema 2020-12 has them by default); annotations (description, title, default, examples, $schema, $id, $comment,
//   deprecated, readOnly, writeOnly) are ignored. Any other keyword throws jinx::Error naming
//   it, as do invalid or unsatisfiable schemas.
//
// What the compiled grammar generates (always a subset of what the schema accepts):
//   - Objects with listed properties emit only those properties, each at most once, in the
//     order the schema lists them (a JSON text keeps that order only when parsed as
//     nlohmann::ordered_json; nlohmann::json sorts keys). Required ones always appear, optional
//     ones may be skipped. Extra keys are never emitted, whatever additionalProperties says.
//     An object schema without properties (e.g. {"type": "object"}) is a free map whose values
//     follow additionalProperties (any JSON value when absent or true).
//   - Whitespace: none, except one optional space after ':' and after ',' — the model cannot
//     ramble in whitespace, and both `{"a":1,"b":2}` and `{"a": 1, "b": 2}` are allowed.
//   - enum/const values are emitted in their compact serialization (nlohmann dump()).
//   - Numbers: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? with at most kMaxIntDigits integer
//     digits, kMaxFracDigits fraction digits and kMaxExpDigits exponent digits; integers have
//     no fraction and no exponent.
//   - Strings: full JSON string syntax (all escapes, \uXXXX with surrogates only as valid
//     pairs), valid UTF-8 only, no raw control characters; lengths count code points (a
//     surrogate pair or an escape is one), as JSON Schema does. A string under a pattern or
//     format is written without escapes (so never holds '"', '\\' or control characters),
//     its bytes following the pattern's automaton (byte_dfa.h).
//
// Known gap: oneOf is compiled as anyOf, so a value matching several alternatives is possible
// when the alternatives overlap (they rarely do in practice: different types or keys).
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "structured/byte_dfa.h"

namespace jinx {

inline constexpr uint32_t kUnbounded = std::numeric_limits<uint32_t>::max();
inline constexpr uint32_t kMaxIntDigits = 18;
inline constexpr uint32_t kMaxFracDigits = 18;
inline constexpr uint32_t kMaxExpDigits = 2;

enum class NodeKind : uint8_t {
  kString,   // min_len, max_len
  kNumber,   // any JSON number (bounded digits)
  kInteger,  // -?(0|[1-9][0-9]*)
  kLiteral,  // one of a fixed set of serialized values (enum, const, true/false, null)
  kObject,   // listed properties, or a free map (map_value >= 0)
  kArray,    // prefix, items, min_items, max_items
  kAnyOf,    // alternatives (forks the matcher's stack)
  kAlias,    // same as target ($ref); resolved at value start
};

// A byte trie over serialized literals (enum values, property keys), stored flat: node i's
// children are edges[first_edge, first_edge + n_edges), sorted by byte.
struct TrieNode {
  uint32_t first_edge = 0;
  uint32_t n_edges = 0;
  int32_t value = -1;  // index of the literal ending here, or -1
};
struct TrieEdge {
  uint8_t byte = 0;
  uint32_t child = 0;
};

struct ObjectProperty {
  std::string key;  // as emitted: a JSON string literal with quotes, e.g. "\"name\""
  uint32_t value = 0;
  bool required = false;
};

struct GrammarNode {
  NodeKind kind = NodeKind::kString;
  // kString
  uint32_t min_len = 0;
  uint32_t max_len = kUnbounded;
  // kString with a pattern or a known format: the content's bytes, written without escapes,
  // follow this automaton (null: any content).
  std::shared_ptr<const ByteDfa> dfa;
  // kNumber / kInteger: minimum / maximum / exclusive*, as integers (an integer's bounds are
  // rounded inward and closed; a number's must be integers). Without a bound the value is
  // limited only by the digits allowed.
  bool bounded = false;
  bool has_lo = false, has_hi = false;
  bool lo_open = false, hi_open = false;  // exclusiveMinimum / exclusiveMaximum
  int64_t lo = 0, hi = 0;
  // kLiteral: trie root
  uint32_t trie_root = 0;
  // kObject
  std::vector<ObjectProperty> props;
  std::vector<uint32_t> key_roots;     // [n_props] trie of the keys that may come at index i
  std::vector<uint8_t> required_from;  // [n_props + 1] 1 if a required property is at >= i
  int32_t map_value = -1;              // free map: node of every value; -1: listed properties
  // kArray
  std::vector<uint32_t> prefix;
  int32_t items = -1;  // node of items after the prefix; -1: none allowed
  uint32_t min_items = 0;
  uint32_t max_items = kUnbounded;
  // kAnyOf
  std::vector<uint32_t> alts;
  // kAlias
  uint32_t target = 0;
};

class JsonGrammar {
 public:
  // response_format {"type": "json_object"}: any JSON object.
  static std::shared_ptr<const JsonGrammar> any_object();
  // Throws jinx::Error for unsupported keywords (named) and invalid or unsatisfiable schemas.
  // The nlohmann::json overload sees properties in sorted order (that is how nlohmann::json
  // stores objects); the ordered_json and text overloads keep the schema's order.
  static std::shared_ptr<const JsonGrammar> from_schema(const nlohmann::json& schema);
  static std::shared_ptr<const JsonGrammar> from_schema(const nlohmann::ordered_json& schema);
  static std::shared_ptr<const JsonGrammar> from_schema_text(std::string_view schema_json);

  // --- read by the matcher ---
  uint32_t root() const { return root_; }
  uint32_t key_string() const { return key_string_; }  // unconstrained string (map keys)
  const GrammarNode& node(uint32_t id) const { return nodes_[id]; }
  size_t n_nodes() const { return nodes_.size(); }
  const TrieNode& trie_node(uint32_t id) const { return trie_nodes_[id]; }
  // Child of trie node `id` by byte c, or -1.
  int64_t trie_child(uint32_t id, uint8_t c) const {
    const TrieNode& n = trie_nodes_[id];
    for (uint32_t e = n.first_edge; e < n.first_edge + n.n_edges; ++e) {
      if (trie_edges_[e].byte == c) return trie_edges_[e].child;
    }
    return -1;
  }

 private:
  friend class SchemaCompiler;
  std::vector<GrammarNode> nodes_;
  std::vector<TrieNode> trie_nodes_;
  std::vector<TrieEdge> trie_edges_;
  uint32_t root_ = 0;
  uint32_t key_string_ = 0;
};

}  // namespace jinx
