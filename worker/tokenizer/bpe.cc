#include "worker/tokenizer/bpe.h"

#include <atomic>
#include <algorithm>
#include <string>

namespace r1::tokenizer {
namespace {

std::atomic<uint64_t> next_serial{1};

constexpr size_t kCacheMaxWordBytes = 128;
constexpr size_t kCacheMaxEntries = 1 << 15;  // per thread: a few MB at most
constexpr size_t kSmallWord = 64;  // up to this many symbols: the simple quadratic merge

struct WordCache {
  uint64_t owner = 0;
  // word -> (offset, length) in ids
  absl::flat_hash_map<std::string, std::pair<uint32_t, uint32_t>> map;
  std::vector<int32_t> ids;

  void Reset(uint64_t serial) {
    owner = serial;
    map.clear();
    ids.clear();
  }
};

WordCache& Cache() {
  thread_local WordCache cache;
  return cache;
}

}  // namespace

void MergeTable::Reserve(size_t n) {
  size_t cap = 16;
  while (cap * 3 < n * 4) cap <<= 1;  // load factor at most 3/4
  if (cap <= slots_.size()) return;
  std::vector<Entry> old = std::move(slots_);
  slots_.assign(cap, Entry{kEmpty, 0, 0});
  mask_ = cap - 1;
  shift_ = 64 - __builtin_ctzll(cap);
  size_ = 0;
  for (const Entry& e : old) {
    if (e.key != kEmpty) InsertOrAssign(e.key, e.rank, e.merged);
  }
}

void MergeTable::InsertOrAssign(uint64_t key, uint32_t rank, int32_t merged) {
  if ((size_ + 1) * 4 > slots_.size() * 3) Reserve((size_ + 1) * 2);
  for (size_t i = Slot(key);; i = (i + 1) & mask_) {
    Entry& e = slots_[i];
    if (e.key == kEmpty) {
      e = Entry{key, rank, merged};
      ++size_;
      return;
    }
    if (e.key == key) {
      e.rank = rank;
      e.merged = merged;
      return;
    }
  }
}

BpeModel::BpeModel() : serial_(next_serial.fetch_add(1)) {
  for (auto& id : byte_id_) id = -1;
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  if (word.size() == 1) {
    int32_t id = byte_id_[static_cast<uint8_t>(word[0])];
    if (id >= 0) {
      out->push_back(id);
    } else if (unk_id_ >= 0) {
      out->push_back(unk_id_);
    }
    return;
  }
  if (word.size() > kCacheMaxWordBytes) {
    EncodeWordUncached(word, out);
    return;
  }
  WordCache& cache = Cache();
  if (cache.owner != serial_) cache.Reset(serial_);
  absl::string_view key(word.data(), word.size());
  if (auto it = cache.map.find(key); it != cache.map.end()) {
    const int32_t* p = cache.ids.data() + it->second.first;
    out->insert(out->end(), p, p + it->second.second);
    return;
  }
  size_t before = out->size();
  EncodeWordUncached(word, out);
  if (cache.map.size() >= kCacheMaxEntries) cache.Reset(serial_);
  uint32_t off = static_cast<uint32_t>(cache.ids.size());
  cache.ids.insert(cache.ids.end(), out->begin() + before, out->end());
  cache.map.emplace(std::string(word), std::make_pair(off, static_cast<uint32_t>(out->size() - before)));
}

void BpeModel::EncodeWordUncached(std::string_view word, std::vector<int32_t>* out) const {
  if (ignore_merges_) {
    auto it = whole_words_.find(word);
    if (it != whole_words_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  thread_local std::vector<int32_t> sym;
  sym.clear();
  for (unsigned char c : word) {
    int32_t id = byte_id_[c];
    if (id >= 0) {
      sym.push_back(id);
    } else if (unk_id_ >= 0) {
      sym.push_back(unk_id_);
    }
  }
  if (sym.size() <= kSmallWord) {
    MergeSmall(sym, out);
  } else {
    MergeLarge(sym, out);
  }
}

// Lowest rank first, leftmost among equal ranks: the order Hugging Face's heap gives.
void BpeModel::MergeSmall(std::vector<int32_t>& sym, std::vector<int32_t>* out) const {
  size_t m = sym.size();
  uint32_t rank[kSmallWord];
  int32_t merged[kSmallWord];
  constexpr uint32_t kNone = UINT32_MAX;
  auto fill = [&](size_t i) {
    const Merge* mg = FindMerge(sym[i], sym[i + 1]);
    rank[i] = mg ? mg->rank : kNone;
    merged[i] = mg ? mg->merged : -1;
  };
  for (size_t i = 0; i + 1 < m; ++i) fill(i);
  while (m > 1) {
    size_t best = 0;
    uint32_t best_rank = kNone;
    for (size_t i = 0; i + 1 < m; ++i) {
      if (rank[i] < best_rank) {
        best_rank = rank[i];
        best = i;
      }
    }
    if (best_rank == kNone) break;
    sym[best] = merged[best];
    for (size_t i = best + 1; i + 1 < m; ++i) {
      sym[i] = sym[i + 1];
      rank[i] = rank[i + 1];
      merged[i] = merged[i + 1];
    }
    --m;
    if (best > 0) fill(best - 1);
    if (best + 1 < m) fill(best);
  }
  out->insert(out->end(), sym.begin(), sym.begin() + m);
}

// Linked symbols and a heap of candidate merges, as Hugging Face's Word::merge_all. A candidate
// records the pair it was made for; it is stale when either symbol has changed since.
void BpeModel::MergeLarge(std::vector<int32_t>& sym, std::vector<int32_t>* out) const {
  const int n = static_cast<int>(sym.size());
  struct Cand {
    uint32_t rank;
    int pos;
    int32_t left, right, merged;
  };
  // Lowest rank first, then leftmost.
  auto later = [](const Cand& a, const Cand& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  thread_local std::vector<int> next, prev;
  thread_local std::vector<Cand> heap;
  next.resize(n);
  prev.resize(n);
  heap.clear();
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  for (int i = 0; i + 1 < n; ++i) {
    if (const Merge* mg = FindMerge(sym[i], sym[i + 1])) {
      heap.push_back({mg->rank, i, sym[i], sym[i + 1], mg->merged});
    }
  }
  std::make_heap(heap.begin(), heap.end(), later);
  auto push = [&](int l, int r) {
    if (const Merge* mg = FindMerge(sym[l], sym[r])) {
      heap.push_back({mg->rank, l, sym[l], sym[r], mg->merged});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    Cand c = heap.back();
    heap.pop_back();
    int r = next[c.pos];
    // prev[pos] == -2 marks a symbol merged into its left neighbour.
    if (prev[c.pos] == -2 || r < 0 || sym[c.pos] != c.left || sym[r] != c.right) continue;
    sym[c.pos] = c.merged;
    prev[r] = -2;
    next[c.pos] = next[r];
    if (next[r] >= 0) prev[next[r]] = c.pos;
    if (prev[c.pos] >= 0) push(prev[c.pos], c.pos);
    if (next[c.pos] >= 0) push(c.pos, next[c.pos]);
  }
  for (int i = 0; i >= 0; i = next[i]) out->push_back(sym[i]);
}

}  // namespace r1::tokenizer
