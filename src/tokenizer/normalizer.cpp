#include "tokenizer/normalizer.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "tokenizer/nfc_data.h"
#include "tokenizer/utf8.h"

namespace jinx {
namespace {

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;
constexpr char32_t kSCount = kLCount * kNCount;

uint8_t ccc(char32_t cp) {
  if (cp < 0x300) return 0;
  const auto* t = nfc_data::kCccRanges;
  const size_t n = nfc_data::kCccRangesCount;
  size_t lo = 0, hi = n;
  while (lo < hi) {  // first range with last >= cp
    const size_t mid = (lo + hi) / 2;
    if (t[mid][1] < cp)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < n && t[lo][0] <= cp ? static_cast<uint8_t>(t[lo][2]) : 0;
}

void decompose(char32_t cp, std::vector<char32_t>* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  const auto* t = nfc_data::kDecompIndex;
  const size_t n = nfc_data::kDecompIndexCount;
  const auto* it =
      std::lower_bound(t, t + n, cp, [](const uint32_t* row, char32_t v) { return row[0] < v; });
  if (it == t + n || (*it)[0] != cp) {
    out->push_back(cp);
    return;
  }
  for (uint32_t k = 0; k < (*it)[2]; ++k) out->push_back(nfc_data::kDecompData[(*it)[1] + k]);
}

// The primary composite of (a, b), or 0.
char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto* t = nfc_data::kCompose;
  const size_t n = nfc_data::kComposeCount;
  const auto* it = std::lower_bound(
      t, t + n, std::make_pair(a, b), [](const uint32_t* row, std::pair<char32_t, char32_t> v) {
        return row[0] != v.first ? row[0] < v.first : row[1] < v.second;
      });
  return it != t + n && (*it)[0] == a && (*it)[1] == b ? (*it)[2] : 0;
}

void canonical_order(std::vector<char32_t>* cps) {
  auto& v = *cps;
  size_t i = 0;
  while (i < v.size()) {
    if (ccc(v[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < v.size() && ccc(v[j]) != 0) ++j;
    std::stable_sort(v.begin() + i, v.begin() + j,
                     [](char32_t a, char32_t b) { return ccc(a) < ccc(b); });
    i = j;
  }
}

void compose_all(std::vector<char32_t>* cps) {
  auto& v = *cps;
  if (v.empty()) return;
  size_t starter = 0;
  bool have_starter = ccc(v[0]) == 0;
  int last_ccc = have_starter ? 0 : 256;
  size_t out = 1;
  for (size_t i = 1; i < v.size(); ++i) {
    const char32_t c = v[i];
    const int cc = ccc(c);
    // c combines with the starter when nothing between them blocks it.
    const bool blocked = out - 1 != starter && (last_ccc == 0 || last_ccc >= cc);
    if (have_starter && !blocked) {
      const char32_t comp = compose(v[starter], c);
      if (comp != 0) {
        v[starter] = comp;
        continue;
      }
    }
    if (cc == 0) {
      starter = out;
      have_starter = true;
    }
    last_ccc = cc;
    v[out++] = c;
  }
  v.resize(out);
}

}  // namespace

std::string nfc(std::string_view s) {
  std::vector<char32_t> cps;
  cps.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    size_t bad = 0;
    bool truncated = false;
    const size_t n = utf8::valid_seq_len(s, i, &bad, &truncated);
    if (n == 0) {
      decompose(utf8::kReplacement, &cps);
      i += bad;
      continue;
    }
    decompose(utf8::decode_at(s, i, n), &cps);
    i += n;
  }
  canonical_order(&cps);
  compose_all(&cps);
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : cps) utf8::append(out, cp);
  return out;
}

std::string_view Normalizer::apply(std::string_view s, std::string* storage) const {
  if (kind_ == Kind::kNone) return s;
  // Code points below U+0300 are all NFC-stable starters: most text needs no work.
  const bool simple =
      std::all_of(s.begin(), s.end(), [](char c) { return static_cast<uint8_t>(c) < 0xCC; });
  if (simple) return s;
  *storage = nfc(s);
  return *storage;
}

}  // namespace jinx
