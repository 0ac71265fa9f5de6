// Encoding and decoding Videos with FFmpeg (libav*). Every FFmpeg failure comes back as a Status
// naming the file; nothing here throws. Writes are atomic: the file is encoded next to its final
// name ("out.mp4.tmp-XXXXXX") and renamed into place only when complete.
//
// Pixel mapping: a sample x in [-1, 1] becomes round((x + 1) / 2 * 255), clamped to [0, 255];
// reading maps back with v / 255 * 2 - 1. One-channel videos are written as grey RGB.
#pragma once

#include <cstdint>
#include <string>

#include "vidfarm/common/status.h"
#include "vidfarm/common/video.h"

namespace vidfarm {

enum class VideoFormat {
  kMp4,        // H.264 (libx264), yuv420p, BT.601 limited range.
  kWebm,       // VP9 (libvpx-vp9), yuv420p, BT.601 limited range.
  kGif,        // Fixed 6x7x6 colour cube with ordered dithering, looping.
  kPngFrames,  // A directory of frame_00000.png, frame_00001.png, ... (RGB, lossless).
};

// ".mp4", ".webm", ".gif" (any case) pick those formats; a path ending in '/' means a directory of
// PNG frames. Anything else is InvalidArgument naming the accepted forms.
Result<VideoFormat> FormatFromPath(const std::string& path);

struct WriteOptions {
  int crf = 18;   // Default: 18. Quality for H.264 (0..51) / VP9 (0..63); lower is better.
  int scale = 1;  // Default: 1. Integer nearest-neighbour upscale before encoding (1..64).
};

// Writes `v` in the format FormatFromPath picks. yuv420p needs even sizes, so for MP4/WebM an odd
// width or height (after scaling) is padded by one by repeating the last column or row.
Status WriteVideo(const Video& v, const std::string& path, const WriteOptions& opts = {});

// Creates `dir` (and missing parents) and writes frame_00000.png ... one file per frame.
// opts.crf is ignored.
Status WritePngFrames(const Video& v, const std::string& dir, const WriteOptions& opts = {});

// Writes frame `frame` of `v` as one PNG.
Status WritePng(const Video& v, int64_t frame, const std::string& path, int scale = 1);

struct ReadOptions {
  int64_t max_frames = -1;  // Default: -1 (all frames). Stop after this many frames.
};

// Decodes the best video stream of any file FFmpeg can read into an RGB Video in [-1, 1].
// fps comes from the stream's avg_frame_rate, else its r_frame_rate. Frames whose size differs
// from the first one are rescaled to it. Missing file: NotFound; not a video: InvalidArgument or
// Corruption.
Result<Video> ReadVideo(const std::string& path, const ReadOptions& opts = {});

}  // namespace vidfarm
