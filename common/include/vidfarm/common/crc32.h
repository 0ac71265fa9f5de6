// CRC-32 checksums of the wire protocol (IEEE 802.3 polynomial, as zlib and PNG) and of stored
// blob chunks (Castagnoli, as RocksDB and iSCSI). Software slicing-by-8 everywhere; CRC-32C uses
// the SSE4.2 crc32 instruction when the CPU has it (checked once at run time). Both take the CRC
// of the bytes before `data` as `crc`, so a buffer may be checksummed in pieces.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vidfarm {

uint32_t Crc32(const void* data, size_t n, uint32_t crc = 0);
uint32_t Crc32c(const void* data, size_t n, uint32_t crc = 0);

// The portable code paths, for tests that compare them with the accelerated ones.
uint32_t Crc32cPortable(const void* data, size_t n, uint32_t crc = 0);
bool Crc32cHasHardware();

}  // namespace vidfarm
