// Helpers shared by the storage tests: a fresh temp dir per test and raw RocksDB access, used to
// plant corruption and newer-schema markers exactly as a damaged disk or a newer build would.
#pragma once

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include "vidfarm/storage/store.h"

namespace vidfarm::storage::testing {

// A fresh directory for each test (tests/test_util.h).
class TempDir : public vidfarm::testing::TempDir {
 public:
  TempDir() : vidfarm::testing::TempDir("vf_storage") {}
};

// A RocksDB handle on the store's directory with every column family open, for tests only.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    std::vector<std::string> names;
    rocksdb::DBOptions opts;
    EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(opts, path, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    rocksdb::Status s = rocksdb::DB::Open(opts, path, cfs, &handles_, &db_);
    EXPECT_TRUE(s.ok()) << s.ToString();
    for (size_t i = 0; i < names.size() && s.ok(); ++i) by_name_[names[i]] = handles_[i];
  }
  ~RawDb() {
    if (!db_) return;
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    delete db_;
  }
  rocksdb::DB* db() { return db_; }
  rocksdb::ColumnFamilyHandle* cf(const std::string& name) { return by_name_.at(name); }
  rocksdb::ColumnFamilyHandle* Create(const std::string& name) {
    rocksdb::ColumnFamilyHandle* h = nullptr;
    EXPECT_TRUE(db_->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), name, &h).ok());
    handles_.push_back(h);
    by_name_[name] = h;
    return h;
  }
  std::string Get(const std::string& cf_name, const std::string& key) {
    std::string v;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(cf_name), key, &v);
    EXPECT_TRUE(s.ok()) << key << ": " << s.ToString();
    return v;
  }
  void Put(const std::string& cf_name, const std::string& key, const std::string& value) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db_->Put(wo, cf(cf_name), key, value).ok());
  }
  void Delete(const std::string& cf_name, const std::string& key) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db_->Delete(wo, cf(cf_name), key).ok());
  }
  std::vector<std::string> Keys(const std::string& cf_name) {
    std::vector<std::string> keys;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(cf_name)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) keys.push_back(it->key().ToString());
    EXPECT_TRUE(it->status().ok());
    return keys;
  }

 private:
  rocksdb::DB* db_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> by_name_;
};

inline std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class FakeClock : public Clock {
 public:
  int64_t NowMicros() const override { return now_us; }
  int64_t now_us = 1'700'000'000'000'000;
};

inline std::unique_ptr<Store> OpenOrDie(const StoreOptions& opts) {
  auto store = Store::Open(opts);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(store).value() : nullptr;
}

}  // namespace vidfarm::storage::testing
