// CRC-32C (Castagnoli), the checksum RocksDB and iSCSI use; software, table-driven.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vidfarm::storage {

uint32_t Crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace vidfarm::storage
