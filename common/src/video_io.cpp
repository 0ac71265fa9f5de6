#include "vidfarm/common/video_io.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "vidfarm/common/log.h"

namespace vidfarm {
namespace {

namespace fs = std::filesystem;

// Largest encoded side we accept; guards int overflow in width * scale and absurd allocations.
constexpr int64_t kMaxEncodedSide = 16384;
constexpr int kMaxScale = 64;

// ---- RAII for every FFmpeg handle -------------------------------------------------------------

struct InputFormatDeleter {
  void operator()(AVFormatContext* c) const { avformat_close_input(&c); }
};
struct OutputFormatDeleter {
  void operator()(AVFormatContext* c) const {
    if (!(c->oformat->flags & AVFMT_NOFILE)) avio_closep(&c->pb);
    avformat_free_context(c);
  }
};
struct CodecContextDeleter {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FrameDeleter {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsDeleter {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};
struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

using InputFormatPtr = std::unique_ptr<AVFormatContext, InputFormatDeleter>;
using OutputFormatPtr = std::unique_ptr<AVFormatContext, OutputFormatDeleter>;
using CodecContextPtr = std::unique_ptr<AVCodecContext, CodecContextDeleter>;
using FramePtr = std::unique_ptr<AVFrame, FrameDeleter>;
using PacketPtr = std::unique_ptr<AVPacket, PacketDeleter>;
using SwsPtr = std::unique_ptr<SwsContext, SwsDeleter>;

// ---- Errors and logging -----------------------------------------------------------------------

Status FfmpegError(int err, const std::string& what) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(err, text, sizeof(text));
  std::string msg = what + ": " + text;
  if (err == AVERROR(ENOENT)) return Status::NotFound(msg);
  if (err == AVERROR_INVALIDDATA) return Status::Corruption(msg);
  if (err == AVERROR(ENOMEM)) return Status::ResourceExhausted(msg);
  return Status::IOError(msg);
}

// FFmpeg prints to stderr on its own; route it through our logger so lines carry our format and
// level. Its info chatter (x264 statistics) only shows at debug level.
void ForwardFfmpegLog(void* avcl, int level, const char* format, va_list args) {
  if (level > AV_LOG_WARNING && (level > AV_LOG_VERBOSE || GetLogLevel() > LogLevel::kDebug)) {
    return;
  }
  static thread_local int print_prefix = 1;
  char line[1024];
  av_log_format_line2(avcl, level, format, args, line, sizeof(line), &print_prefix);
  std::string_view text(line);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  if (text.empty()) return;
  const LogLevel ours = level <= AV_LOG_ERROR     ? LogLevel::kError
                        : level <= AV_LOG_WARNING ? LogLevel::kWarn
                                                  : LogLevel::kDebug;
  Log(ours, "ffmpeg: {}", text);
}

void InstallFfmpegLogOnce() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_callback(&ForwardFfmpegLog); });
}

// ---- Atomic output files ----------------------------------------------------------------------

// A temporary file next to the final path; Commit() renames it into place, otherwise the
// destructor removes it, so a failed write never leaves a partial file under the final name.
class AtomicFile {
 public:
  static Result<AtomicFile> Create(const std::string& final_path) {
    std::string name = final_path + ".tmp-XXXXXX";
    const int fd = mkstemp(name.data());
    if (fd < 0) {
      return Status::IOError(
          fmt::format("cannot create a file next to {}: {}", final_path, std::strerror(errno)));
    }
    // mkstemp creates the file 0600; a rendered video should be readable like any other output.
    fchmod(fd, 0644);
    close(fd);
    return AtomicFile(final_path, std::move(name));
  }

  AtomicFile(AtomicFile&& other) noexcept
      : final_path_(std::move(other.final_path_)), tmp_path_(std::move(other.tmp_path_)) {
    other.tmp_path_.clear();
  }
  AtomicFile& operator=(AtomicFile&&) = delete;
  ~AtomicFile() {
    if (!tmp_path_.empty()) unlink(tmp_path_.c_str());
  }

  const std::string& tmp_path() const { return tmp_path_; }

  Status Commit() {
    if (std::rename(tmp_path_.c_str(), final_path_.c_str()) != 0) {
      return Status::IOError(
          fmt::format("cannot rename {} to {}: {}", tmp_path_, final_path_, std::strerror(errno)));
    }
    tmp_path_.clear();
    return Status::OK();
  }

 private:
  AtomicFile(std::string final_path, std::string tmp_path)
      : final_path_(std::move(final_path)), tmp_path_(std::move(tmp_path)) {}

  std::string final_path_;
  std::string tmp_path_;
};

Status WriteFileAtomically(const std::string& path, const uint8_t* data, size_t size) {
  VF_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path));
  std::unique_ptr<std::FILE, FileCloser> out(std::fopen(file.tmp_path().c_str(), "wb"));
  if (!out) return Status::IOError(fmt::format("{}: {}", file.tmp_path(), std::strerror(errno)));
  const bool wrote = std::fwrite(data, 1, size, out.get()) == size;
  // fclose flushes, so its result is part of whether the write succeeded.
  const bool closed = std::fclose(out.release()) == 0;
  if (!wrote || !closed) {
    return Status::IOError(fmt::format("writing {}: {}", path, std::strerror(errno)));
  }
  return file.Commit();
}

// ---- Video samples to 8-bit pixels ------------------------------------------------------------

uint8_t ToByte(float x) {
  return static_cast<uint8_t>(std::lround(std::clamp((x + 1.0f) * 127.5f, 0.0f, 255.0f)));
}

// Renders frame t as packed RGB24 of out_w x out_h: nearest-neighbour upscaling by `scale`; rows
// and columns past the scaled size (yuv420p's even padding) repeat the last row/column.
void RenderRgb24(const Video& v, int64_t t, int scale, int out_w, int out_h, uint8_t* dst,
                 int dst_stride) {
  const int64_t green = v.channels == 3 ? 1 : 0;
  const int64_t blue = v.channels == 3 ? 2 : 0;
  for (int y = 0; y < out_h; ++y) {
    const int64_t sy = std::min<int64_t>(y / scale, v.height - 1);
    uint8_t* row = dst + static_cast<ptrdiff_t>(y) * dst_stride;
    for (int x = 0; x < out_w; ++x) {
      const int64_t sx = std::min<int64_t>(x / scale, v.width - 1);
      row[3 * x + 0] = ToByte(v.at(0, t, sy, sx));
      row[3 * x + 1] = ToByte(v.at(green, t, sy, sx));
      row[3 * x + 2] = ToByte(v.at(blue, t, sy, sx));
    }
  }
}

// GIF: a fixed 6x7x6 colour cube (green gets the extra level: the eye is most sensitive to it)
// with 4x4 ordered dithering. Fixed, so frames share one palette and dithering does not flicker.
constexpr int kCubeLevels[3] = {6, 7, 6};
constexpr int kBayer4[4][4] = {{0, 8, 2, 10}, {12, 4, 14, 6}, {3, 11, 1, 9}, {15, 7, 13, 5}};

void FillCubePalette(uint32_t* palette) {
  std::fill(palette, palette + AVPALETTE_COUNT, 0xff000000u);
  for (int r = 0; r < kCubeLevels[0]; ++r) {
    for (int g = 0; g < kCubeLevels[1]; ++g) {
      for (int b = 0; b < kCubeLevels[2]; ++b) {
        const uint32_t r8 = r * 255 / (kCubeLevels[0] - 1);
        const uint32_t g8 = g * 255 / (kCubeLevels[1] - 1);
        const uint32_t b8 = b * 255 / (kCubeLevels[2] - 1);
        palette[(r * kCubeLevels[1] + g) * kCubeLevels[2] + b] =
            0xff000000u | (r8 << 16) | (g8 << 8) | b8;
      }
    }
  }
}

void DitherToCube(const uint8_t* rgb, int width, int height, uint8_t* dst, int dst_stride) {
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const float threshold = (kBayer4[y % 4][x % 4] + 0.5f) / 16.0f;
      const uint8_t* px = rgb + (static_cast<ptrdiff_t>(y) * width + x) * 3;
      int level[3];
      for (int c = 0; c < 3; ++c) {
        const int top = kCubeLevels[c] - 1;
        level[c] = std::min(static_cast<int>(px[c] * top / 255.0f + threshold), top);
      }
      dst[static_cast<ptrdiff_t>(y) * dst_stride + x] =
          static_cast<uint8_t>((level[0] * kCubeLevels[1] + level[1]) * kCubeLevels[2] + level[2]);
    }
  }
}

// ---- Encoding ---------------------------------------------------------------------------------

struct CodecChoice {
  const char* muxer;
  const char* encoder;
  AVPixelFormat pix_fmt;
  int max_crf;
};

CodecChoice ChoiceFor(VideoFormat format) {
  switch (format) {
    case VideoFormat::kMp4:
      return {"mp4", "libx264", AV_PIX_FMT_YUV420P, 51};
    case VideoFormat::kWebm:
      return {"webm", "libvpx-vp9", AV_PIX_FMT_YUV420P, 63};
    case VideoFormat::kGif:
      return {"gif", "gif", AV_PIX_FMT_PAL8, 0};
    case VideoFormat::kPngFrames:
      break;
  }
  return {"image2", "png", AV_PIX_FMT_RGB24, 0};
}

Status CheckWritable(const Video& v, int scale, const std::string& path) {
  VF_RETURN_NOT_OK(v.Validate().WithContext("writing " + path));
  if (scale < 1 || scale > kMaxScale) {
    return Status::InvalidArgument(
        fmt::format("writing {}: scale must be in 1..{}, got {}", path, kMaxScale, scale));
  }
  if (v.width * scale > kMaxEncodedSide || v.height * scale > kMaxEncodedSide) {
    return Status::InvalidArgument(fmt::format("writing {}: {} scaled x{} exceeds {} pixels a side",
                                               path, v.ShapeString(), scale, kMaxEncodedSide));
  }
  return Status::OK();
}

// Sends one frame (nullptr flushes) and muxes every packet the encoder hands back.
Status EncodeAndMux(AVCodecContext* enc, const AVFrame* frame, AVFormatContext* out,
                    AVStream* stream, AVPacket* pkt, const std::string& path) {
  int err = avcodec_send_frame(enc, frame);
  if (err < 0) return FfmpegError(err, "encoding " + path);
  while (true) {
    err = avcodec_receive_packet(enc, pkt);
    if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return Status::OK();
    if (err < 0) return FfmpegError(err, "encoding " + path);
    av_packet_rescale_ts(pkt, enc->time_base, stream->time_base);
    pkt->stream_index = stream->index;
    err = av_interleaved_write_frame(out, pkt);  // Takes over the packet's reference.
    if (err < 0) return FfmpegError(err, "writing " + path);
  }
}

Status EncodeVideo(const Video& v, VideoFormat format, const std::string& path,
                   const std::string& tmp_path, const WriteOptions& opts) {
  const CodecChoice choice = ChoiceFor(format);
  const bool uses_crf = format != VideoFormat::kGif;
  if (uses_crf && (opts.crf < 0 || opts.crf > choice.max_crf)) {
    return Status::InvalidArgument(
        fmt::format("writing {}: crf must be in 0..{}, got {}", path, choice.max_crf, opts.crf));
  }
  const AVCodec* codec = avcodec_find_encoder_by_name(choice.encoder);
  if (codec == nullptr) {
    return Status::NotSupported(
        fmt::format("writing {}: this FFmpeg has no {} encoder", path, choice.encoder));
  }
  int width = static_cast<int>(v.width) * opts.scale;
  int height = static_cast<int>(v.height) * opts.scale;
  const bool yuv = choice.pix_fmt == AV_PIX_FMT_YUV420P;
  if (yuv) {  // Chroma is subsampled 2x2, so both sides must be even.
    width += width % 2;
    height += height % 2;
  }

  AVFormatContext* raw_out = nullptr;
  int err = avformat_alloc_output_context2(&raw_out, nullptr, choice.muxer, tmp_path.c_str());
  if (err < 0) return FfmpegError(err, "creating " + path);
  OutputFormatPtr out(raw_out);

  CodecContextPtr enc(avcodec_alloc_context3(codec));
  if (!enc) return Status::ResourceExhausted("allocating an encoder for " + path);
  // A rational frame rate, so 24000/1001 stays exact and pts are plain frame indices.
  const AVRational rate = av_d2q(v.fps, 100000);
  enc->width = width;
  enc->height = height;
  enc->pix_fmt = choice.pix_fmt;
  enc->time_base = av_inv_q(rate);
  enc->framerate = rate;
  if (yuv) {
    // Tag what swscale's default conversion produces, so players decode the colours we meant.
    enc->color_range = AVCOL_RANGE_MPEG;
    enc->colorspace = AVCOL_SPC_SMPTE170M;
    enc->color_primaries = AVCOL_PRI_SMPTE170M;
    enc->color_trc = AVCOL_TRC_SMPTE170M;
  }
  if (out->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  if (format == VideoFormat::kMp4) {
    av_opt_set_int(enc->priv_data, "crf", opts.crf, 0);
    // No macroblock-tree rate control: on AVX-512 CPUs x264 0.164's mbtree path made the B-frames
    // of the same input encode differently from one process to the next (valgrind shows its
    // propagate-cost SIMD reading past the end of its buffer), so the same render gave different
    // MP4s. Without it, equal frames give equal bytes; the cost is a few percent of file size.
    av_opt_set(enc->priv_data, "x264-params", "mbtree=0", 0);
    // moov atom first, so the dashboard can start playing before the whole file arrives.
    av_opt_set(out->priv_data, "movflags", "+faststart", 0);
  } else if (format == VideoFormat::kWebm) {
    enc->bit_rate = 0;  // With crf, zero bitrate selects libvpx's constant-quality mode.
    av_opt_set_int(enc->priv_data, "crf", opts.crf, 0);
    av_opt_set(enc->priv_data, "deadline", "good", 0);
    av_opt_set_int(enc->priv_data, "cpu-used", 4, 0);  // Speed over a few percent of size.
  }
  err = avcodec_open2(enc.get(), codec, nullptr);
  if (err < 0)
    return FfmpegError(err, fmt::format("opening {} encoder for {}", choice.encoder, path));

  AVStream* stream = avformat_new_stream(out.get(), nullptr);
  if (stream == nullptr) return Status::ResourceExhausted("adding a stream to " + path);
  err = avcodec_parameters_from_context(stream->codecpar, enc.get());
  if (err < 0) return FfmpegError(err, "configuring " + path);
  stream->time_base = enc->time_base;
  stream->avg_frame_rate = rate;

  if (!(out->oformat->flags & AVFMT_NOFILE)) {
    err = avio_open(&out->pb, tmp_path.c_str(), AVIO_FLAG_WRITE);
    if (err < 0) return FfmpegError(err, "opening " + tmp_path);
  }
  err = avformat_write_header(out.get(), nullptr);
  if (err < 0) return FfmpegError(err, "writing header of " + path);

  FramePtr frame(av_frame_alloc());
  PacketPtr pkt(av_packet_alloc());
  if (!frame || !pkt) return Status::ResourceExhausted("allocating frames for " + path);
  frame->format = choice.pix_fmt;
  frame->width = width;
  frame->height = height;
  err = av_frame_get_buffer(frame.get(), 0);
  if (err < 0) return FfmpegError(err, "allocating frames for " + path);

  SwsPtr sws;
  if (yuv) {
    sws.reset(sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, choice.pix_fmt,
                             SWS_BICUBIC | SWS_ACCURATE_RND, nullptr, nullptr, nullptr));
    if (!sws) return Status::Internal("cannot create an RGB to yuv420p converter for " + path);
  }
  const int rgb_stride = 3 * width;
  // swscale's SIMD reads up to 16 bytes past the last pixel: zeroed padding keeps heap garbage
  // out of the conversion (it made a frame's encode depend on what the heap held before).
  std::vector<uint8_t> rgb(static_cast<size_t>(rgb_stride) * height + 64, 0);
  for (int64_t t = 0; t < v.frames; ++t) {
    err = av_frame_make_writable(frame.get());
    if (err < 0) return FfmpegError(err, "encoding " + path);
    RenderRgb24(v, t, opts.scale, width, height, rgb.data(), rgb_stride);
    if (yuv) {
      const uint8_t* src[1] = {rgb.data()};
      sws_scale(sws.get(), src, &rgb_stride, 0, height, frame->data, frame->linesize);
    } else {
      DitherToCube(rgb.data(), width, height, frame->data[0], frame->linesize[0]);
      FillCubePalette(reinterpret_cast<uint32_t*>(frame->data[1]));
    }
    frame->pts = t;
    VF_RETURN_NOT_OK(EncodeAndMux(enc.get(), frame.get(), out.get(), stream, pkt.get(), path));
  }
  VF_RETURN_NOT_OK(EncodeAndMux(enc.get(), nullptr, out.get(), stream, pkt.get(), path));

  err = av_write_trailer(out.get());
  if (err < 0) return FfmpegError(err, "finishing " + path);
  if (!(out->oformat->flags & AVFMT_NOFILE)) {
    // Closing flushes the last buffered bytes; a failure here means the file is incomplete.
    err = avio_closep(&out->pb);
    if (err < 0) return FfmpegError(err, "closing " + path);
  }
  return Status::OK();
}

// One PNG encoder reused for every frame of a video.
class PngWriter {
 public:
  static Result<PngWriter> Open(const Video& v, int scale) {
    const AVCodec* codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
    if (codec == nullptr) return Status::NotSupported("this FFmpeg has no png encoder");
    PngWriter w(v, scale);
    w.enc_.reset(avcodec_alloc_context3(codec));
    w.frame_.reset(av_frame_alloc());
    w.pkt_.reset(av_packet_alloc());
    if (!w.enc_ || !w.frame_ || !w.pkt_) return Status::ResourceExhausted("allocating png encoder");
    w.enc_->width = static_cast<int>(v.width) * scale;
    w.enc_->height = static_cast<int>(v.height) * scale;
    w.enc_->pix_fmt = AV_PIX_FMT_RGB24;
    w.enc_->time_base = AVRational{1, 1};
    w.enc_->thread_count = 1;  // Frame threads would delay packets; we want one out per frame in.
    int err = avcodec_open2(w.enc_.get(), codec, nullptr);
    if (err < 0) return FfmpegError(err, "opening png encoder");
    w.frame_->format = AV_PIX_FMT_RGB24;
    w.frame_->width = w.enc_->width;
    w.frame_->height = w.enc_->height;
    err = av_frame_get_buffer(w.frame_.get(), 0);
    if (err < 0) return FfmpegError(err, "allocating png frame");
    return w;
  }

  Status Write(int64_t t, const std::string& path) {
    int err = av_frame_make_writable(frame_.get());
    if (err < 0) return FfmpegError(err, "encoding " + path);
    RenderRgb24(*video_, t, scale_, frame_->width, frame_->height, frame_->data[0],
                frame_->linesize[0]);
    frame_->pts = t;
    err = avcodec_send_frame(enc_.get(), frame_.get());
    if (err < 0) return FfmpegError(err, "encoding " + path);
    err = avcodec_receive_packet(enc_.get(), pkt_.get());
    if (err < 0) return FfmpegError(err, "encoding " + path);
    Status st = WriteFileAtomically(path, pkt_->data, static_cast<size_t>(pkt_->size));
    av_packet_unref(pkt_.get());
    return st;
  }

 private:
  PngWriter(const Video& v, int scale) : video_(&v), scale_(scale) {}

  const Video* video_;
  int scale_;
  CodecContextPtr enc_;
  FramePtr frame_;
  PacketPtr pkt_;
};

// ---- Decoding ---------------------------------------------------------------------------------

double StreamFps(const AVStream* stream) {
  for (AVRational r : {stream->avg_frame_rate, stream->r_frame_rate}) {
    if (r.num > 0 && r.den > 0) return av_q2d(r);
  }
  return 0.0;
}

// Collects decoded frames as RGB24 at the first frame's size.
class RgbCollector {
 public:
  Status Add(const AVFrame* f, const std::string& path) {
    if (frames_ == 0) {
      width_ = f->width;
      height_ = f->height;
      rgb_.reset(av_frame_alloc());
      if (!rgb_) return Status::ResourceExhausted("allocating frames for " + path);
      rgb_->format = AV_PIX_FMT_RGB24;
      rgb_->width = width_;
      rgb_->height = height_;
      int err = av_frame_get_buffer(rgb_.get(), 0);
      if (err < 0) return FfmpegError(err, "allocating frames for " + path);
    }
    sws_.reset(sws_getCachedContext(
        sws_.release(), f->width, f->height, static_cast<AVPixelFormat>(f->format), width_, height_,
        AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND, nullptr, nullptr, nullptr));
    if (!sws_)
      return Status::NotSupported(fmt::format("{}: cannot convert its pixels to RGB", path));
    // Honour the stream's own YUV matrix and range (BT.709 HD video, full-range JPEG-style YUV);
    // a no-op for RGB sources.
    const int matrix = f->colorspace == AVCOL_SPC_UNSPECIFIED ? SWS_CS_DEFAULT : f->colorspace;
    sws_setColorspaceDetails(sws_.get(), sws_getCoefficients(matrix),
                             f->color_range == AVCOL_RANGE_JPEG ? 1 : 0,
                             sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
    sws_scale(sws_.get(), f->data, f->linesize, 0, f->height, rgb_->data, rgb_->linesize);
    const size_t row_bytes = static_cast<size_t>(width_) * 3;
    for (int y = 0; y < height_; ++y) {
      const uint8_t* row = rgb_->data[0] + static_cast<ptrdiff_t>(y) * rgb_->linesize[0];
      pixels_.insert(pixels_.end(), row, row + row_bytes);
    }
    ++frames_;
    return Status::OK();
  }

  int64_t frames() const { return frames_; }

  Video ToVideo(double fps) const {
    Video v(3, frames_, height_, width_, fps);
    const int64_t plane = static_cast<int64_t>(height_) * width_;
    for (int64_t t = 0; t < frames_; ++t) {
      for (int64_t i = 0; i < plane; ++i) {
        const uint8_t* px = &pixels_[static_cast<size_t>((t * plane + i) * 3)];
        for (int64_t c = 0; c < 3; ++c) {
          v.data[static_cast<size_t>((c * frames_ + t) * plane + i)] = px[c] / 127.5f - 1.0f;
        }
      }
    }
    return v;
  }

 private:
  int width_ = 0;
  int height_ = 0;
  int64_t frames_ = 0;
  std::vector<uint8_t> pixels_;  // T×H×W×3
  FramePtr rgb_;
  SwsPtr sws_;
};

}  // namespace

Result<VideoFormat> FormatFromPath(const std::string& path) {
  if (!path.empty() && path.back() == '/') return VideoFormat::kPngFrames;
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (ext == ".mp4") return VideoFormat::kMp4;
  if (ext == ".webm") return VideoFormat::kWebm;
  if (ext == ".gif") return VideoFormat::kGif;
  return Status::InvalidArgument(
      fmt::format("cannot tell the video format of '{}': use .mp4, .webm or .gif, or a directory "
                  "path ending in '/' for PNG frames",
                  path));
}

Status WriteVideo(const Video& v, const std::string& path, const WriteOptions& opts) {
  VF_ASSIGN_OR_RETURN(VideoFormat format, FormatFromPath(path));
  if (format == VideoFormat::kPngFrames) return WritePngFrames(v, path, opts);
  VF_RETURN_NOT_OK(CheckWritable(v, opts.scale, path));
  InstallFfmpegLogOnce();
  VF_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path));
  VF_RETURN_NOT_OK(EncodeVideo(v, format, path, file.tmp_path(), opts));
  return file.Commit();
}

Status WritePngFrames(const Video& v, const std::string& dir, const WriteOptions& opts) {
  VF_RETURN_NOT_OK(CheckWritable(v, opts.scale, dir));
  InstallFfmpegLogOnce();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError(fmt::format("cannot create directory {}: {}", dir, ec.message()));
  VF_ASSIGN_OR_RETURN(PngWriter writer, PngWriter::Open(v, opts.scale));
  for (int64_t t = 0; t < v.frames; ++t) {
    const fs::path file = fs::path(dir) / fmt::format("frame_{:05d}.png", t);
    VF_RETURN_NOT_OK(writer.Write(t, file.string()));
  }
  return Status::OK();
}

Status WritePng(const Video& v, int64_t frame, const std::string& path, int scale) {
  VF_RETURN_NOT_OK(CheckWritable(v, scale, path));
  if (frame < 0 || frame >= v.frames) {
    return Status::InvalidArgument(
        fmt::format("writing {}: frame {} is outside {}", path, frame, v.ShapeString()));
  }
  InstallFfmpegLogOnce();
  VF_ASSIGN_OR_RETURN(PngWriter writer, PngWriter::Open(v, scale));
  return writer.Write(frame, path);
}

Result<Video> ReadVideo(const std::string& path, const ReadOptions& opts) {
  if (opts.max_frames == 0 || opts.max_frames < -1) {
    return Status::InvalidArgument(fmt::format(
        "reading {}: max_frames must be -1 (all) or positive, got {}", path, opts.max_frames));
  }
  InstallFfmpegLogOnce();
  std::error_code ec;
  const fs::file_status file = fs::status(path, ec);
  if (!fs::exists(file)) return Status::NotFound(path + ": no such file");
  if (fs::is_directory(file)) {
    return Status::InvalidArgument(path + " is a directory; ReadVideo reads one file");
  }

  AVFormatContext* raw_in = nullptr;
  int err = avformat_open_input(&raw_in, path.c_str(), nullptr, nullptr);
  if (err < 0) return FfmpegError(err, "opening " + path);  // FFmpeg freed raw_in.
  InputFormatPtr in(raw_in);
  err = avformat_find_stream_info(in.get(), nullptr);
  if (err < 0) return FfmpegError(err, "reading stream info of " + path);
  const AVCodec* codec = nullptr;
  const int index = av_find_best_stream(in.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  if (index < 0 || codec == nullptr) {
    return Status::InvalidArgument(path + ": no decodable video stream");
  }
  const AVStream* stream = in->streams[index];
  const double fps = StreamFps(stream);
  if (!(fps > 0.0)) return Status::Corruption(path + ": video stream has no frame rate");

  CodecContextPtr dec(avcodec_alloc_context3(codec));
  if (!dec) return Status::ResourceExhausted("allocating a decoder for " + path);
  err = avcodec_parameters_to_context(dec.get(), stream->codecpar);
  if (err < 0) return FfmpegError(err, "configuring decoder for " + path);
  err = avcodec_open2(dec.get(), codec, nullptr);
  if (err < 0) return FfmpegError(err, "opening decoder for " + path);

  FramePtr frame(av_frame_alloc());
  PacketPtr pkt(av_packet_alloc());
  if (!frame || !pkt) return Status::ResourceExhausted("allocating frames for " + path);
  RgbCollector collector;
  auto want_more = [&] { return opts.max_frames < 0 || collector.frames() < opts.max_frames; };
  auto drain = [&]() -> Status {
    while (want_more()) {
      int e = avcodec_receive_frame(dec.get(), frame.get());
      if (e == AVERROR(EAGAIN) || e == AVERROR_EOF) break;
      if (e < 0) return FfmpegError(e, "decoding " + path);
      Status st = collector.Add(frame.get(), path);
      av_frame_unref(frame.get());
      VF_RETURN_NOT_OK(st);
    }
    return Status::OK();
  };

  while (want_more()) {
    err = av_read_frame(in.get(), pkt.get());
    if (err == AVERROR_EOF) break;
    if (err < 0) return FfmpegError(err, "reading " + path);
    if (pkt->stream_index == index) err = avcodec_send_packet(dec.get(), pkt.get());
    av_packet_unref(pkt.get());
    if (err < 0) return FfmpegError(err, "decoding " + path);
    VF_RETURN_NOT_OK(drain());
  }
  if (want_more()) {  // End of file: flush the frames the decoder still holds.
    err = avcodec_send_packet(dec.get(), nullptr);
    if (err < 0) return FfmpegError(err, "decoding " + path);
    VF_RETURN_NOT_OK(drain());
  }
  if (collector.frames() == 0) return Status::Corruption(path + ": no frames could be decoded");
  return collector.ToVideo(fps);
}

}  // namespace vidfarm
