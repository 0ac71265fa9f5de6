#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vidfarm/common/video_io.h"
#include "vidfarm/common/video_ops.h"

namespace vidfarm {
namespace {

namespace fs = std::filesystem;

// A smooth colour gradient drifting right and down over time: realistic for a lossy codec.
Video MovingGradient(int64_t channels, int64_t frames, int64_t height, int64_t width, double fps) {
  Video v(channels, frames, height, width, fps);
  const double kTwoPi = 6.283185307179586;
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t t = 0; t < frames; ++t) {
      for (int64_t y = 0; y < height; ++y) {
        for (int64_t x = 0; x < width; ++x) {
          const double phase = static_cast<double>(x) / width + 0.5 * y / height +
                               static_cast<double>(t) / frames + c / 3.0;
          v.at(c, t, y, x) = static_cast<float>(0.8 * std::sin(kTwoPi * phase));
        }
      }
    }
  }
  return v;
}

// C++17 has no designated initializers; these keep the call sites readable.
WriteOptions Scaled(int scale) {
  WriteOptions opts;
  opts.scale = scale;
  return opts;
}
WriteOptions WithCrf(int crf) {
  WriteOptions opts;
  opts.crf = crf;
  return opts;
}
ReadOptions FirstFrames(int64_t n) {
  ReadOptions opts;
  opts.max_frames = n;
  return opts;
}

struct Probe {
  std::string codec_name, pix_fmt, r_frame_rate;
  int width = 0, height = 0;
  int64_t frames = -1;
};

// Asks the real ffprobe binary, so the files are checked by a reader independent of our code.
Probe RunFfprobe(const std::string& file) {
  const std::string cmd =
      "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
      "stream=codec_name,width,height,r_frame_rate,nb_read_frames,pix_fmt -of json '" +
      file + "' 2>/dev/null";
  std::string out;
  if (std::FILE* pipe = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
    pclose(pipe);
  }
  Probe probe;
  const nlohmann::json doc = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("streams") || doc["streams"].empty()) {
    ADD_FAILURE() << "ffprobe could not read " << file << ": " << out;
    return probe;
  }
  const nlohmann::json& s = doc["streams"][0];
  probe.codec_name = s.value("codec_name", "");
  probe.pix_fmt = s.value("pix_fmt", "");
  probe.r_frame_rate = s.value("r_frame_rate", "");
  probe.width = s.value("width", 0);
  probe.height = s.value("height", 0);
  probe.frames = std::stoll(s.value("nb_read_frames", "-1"));
  return probe;
}

class VideoIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/vf_video_io_XXXXXX";
    ASSERT_NE(mkdtemp(templ), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string Path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  // Every entry of the temp dir, to prove no temporary or partial file was left behind.
  std::vector<std::string> Entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string dir_;
};

TEST(VideoFormat, FromPath) {
  EXPECT_EQ(*FormatFromPath("out/a.mp4"), VideoFormat::kMp4);
  EXPECT_EQ(*FormatFromPath("A.MP4"), VideoFormat::kMp4);
  EXPECT_EQ(*FormatFromPath("/x/y.webm"), VideoFormat::kWebm);
  EXPECT_EQ(*FormatFromPath("y.gif"), VideoFormat::kGif);
  EXPECT_EQ(*FormatFromPath("frames/"), VideoFormat::kPngFrames);
  for (const char* bad : {"clip.avi", "clip", "frame.png", "mp4", ""}) {
    Result<VideoFormat> f = FormatFromPath(bad);
    ASSERT_FALSE(f.ok()) << bad;
    EXPECT_TRUE(f.status().IsInvalidArgument());
    EXPECT_NE(f.status().message().find(".webm"), std::string::npos) << f.status().message();
  }
}

TEST_F(VideoIoTest, Mp4IsH264WithExactFramesSizeAndFps) {
  const std::string base = Path("base.mp4");
  ASSERT_TRUE(WriteVideo(MovingGradient(3, 16, 24, 40, 3.0), base).ok());
  Probe p = RunFfprobe(base);
  EXPECT_EQ(p.codec_name, "h264");
  EXPECT_EQ(p.pix_fmt, "yuv420p");
  EXPECT_EQ(p.width, 40);
  EXPECT_EQ(p.height, 24);
  EXPECT_EQ(p.r_frame_rate, "3/1");
  EXPECT_EQ(p.frames, 16);

  const std::string big = Path("big.mp4");
  ASSERT_TRUE(WriteVideo(MovingGradient(3, 64, 96, 160, 24.0), big).ok());
  p = RunFfprobe(big);
  EXPECT_EQ(p.codec_name, "h264");
  EXPECT_EQ(p.width, 160);
  EXPECT_EQ(p.height, 96);
  EXPECT_EQ(p.r_frame_rate, "24/1");
  EXPECT_EQ(p.frames, 64);
  EXPECT_EQ(Entries(), (std::vector<std::string>{"base.mp4", "big.mp4"}));
}

TEST_F(VideoIoTest, Mp4TinyOddSizesArePaddedAndScaled) {
  const std::string tiny = Path("tiny.mp4");
  ASSERT_TRUE(WriteVideo(MovingGradient(3, 2, 12, 20, 6.0), tiny).ok());
  Probe p = RunFfprobe(tiny);
  EXPECT_EQ(p.frames, 2);
  EXPECT_EQ(p.width, 20);
  EXPECT_EQ(p.height, 12);

  // 11x19 pads to 12x20 by repeating the last row and column.
  const std::string odd = Path("odd.mp4");
  ASSERT_TRUE(WriteVideo(MovingGradient(3, 3, 11, 19, 6.0), odd).ok());
  p = RunFfprobe(odd);
  EXPECT_EQ(p.frames, 3);
  EXPECT_EQ(p.width, 20);
  EXPECT_EQ(p.height, 12);

  const std::string scaled = Path("scaled.mp4");
  ASSERT_TRUE(WriteVideo(MovingGradient(3, 2, 12, 20, 6.0), scaled, Scaled(4)).ok());
  p = RunFfprobe(scaled);
  EXPECT_EQ(p.width, 80);
  EXPECT_EQ(p.height, 48);
  EXPECT_EQ(p.frames, 2);
}

TEST_F(VideoIoTest, WebmIsVp9) {
  const std::string path = Path("clip.webm");
  ASSERT_TRUE(WriteVideo(MovingGradient(3, 16, 24, 40, 3.0), path).ok());
  Probe p = RunFfprobe(path);
  EXPECT_EQ(p.codec_name, "vp9");
  EXPECT_EQ(p.pix_fmt, "yuv420p");
  EXPECT_EQ(p.width, 40);
  EXPECT_EQ(p.height, 24);
  EXPECT_EQ(p.r_frame_rate, "3/1");
  EXPECT_EQ(p.frames, 16);
}

TEST_F(VideoIoTest, GifHasAllFrames) {
  const std::string path = Path("clip.gif");
  ASSERT_TRUE(WriteVideo(MovingGradient(3, 16, 24, 40, 3.0), path, Scaled(2)).ok());
  Probe p = RunFfprobe(path);
  EXPECT_EQ(p.codec_name, "gif");
  EXPECT_EQ(p.width, 80);
  EXPECT_EQ(p.height, 48);
  EXPECT_EQ(p.frames, 16);

  // Dithering into 252 colours loses detail but must keep the picture.
  Result<Video> back = ReadVideo(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->frames, 16);
  Result<Video> expected = UpscaleNearest(MovingGradient(3, 16, 24, 40, 3.0), 2);
  EXPECT_GT(*Psnr(*back, *expected), 20.0);
}

TEST_F(VideoIoTest, PngFramesAreLossless) {
  // Values on the 8-bit grid survive PNG exactly: k / 255 * 2 - 1.
  Video v(3, 4, 6, 10, 12.0);
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = (i * 37 % 256) / 127.5f - 1.0f;
  const std::string dir = Path("frames") + "/";
  ASSERT_TRUE(WriteVideo(v, dir).ok());
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path().filename());
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files, (std::vector<std::string>{"frame_00000.png", "frame_00001.png",
                                             "frame_00002.png", "frame_00003.png"}));
  Probe p = RunFfprobe(dir + "frame_00003.png");
  EXPECT_EQ(p.codec_name, "png");
  EXPECT_EQ(p.width, 10);
  EXPECT_EQ(p.height, 6);

  for (int64_t t = 0; t < 4; ++t) {
    Result<Video> frame = ReadVideo(dir + files[t]);
    ASSERT_TRUE(frame.ok()) << frame.status().ToString();
    ASSERT_EQ(frame->frames, 1);
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t y = 0; y < 6; ++y) {
        for (int64_t x = 0; x < 10; ++x) {
          ASSERT_NEAR(frame->at(c, 0, y, x), v.at(c, t, y, x), 1e-6) << t << c << y << x;
        }
      }
    }
  }
}

TEST_F(VideoIoTest, WritePngScalesOneFrameAndMapsRange) {
  Video v(1, 2, 2, 2, 3.0);
  v.at(0, 1, 0, 0) = -1.0f;  // black
  v.at(0, 1, 0, 1) = 1.0f;   // white
  v.at(0, 1, 1, 0) = 5.0f;   // clamps to white
  v.at(0, 1, 1, 1) = 0.0f;   // mid grey: round(127.5) = 128
  const std::string path = Path("one.png");
  ASSERT_TRUE(WritePng(v, 1, path, 3).ok());
  Result<Video> back = ReadVideo(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->height, 6);
  ASSERT_EQ(back->width, 6);
  for (int64_t c = 0; c < 3; ++c) {  // Grey is written to all three channels.
    EXPECT_EQ(back->at(c, 0, 2, 2), -1.0f);
    EXPECT_EQ(back->at(c, 0, 0, 5), 1.0f);
    EXPECT_EQ(back->at(c, 0, 5, 0), 1.0f);
    EXPECT_NEAR(back->at(c, 0, 3, 3), 128 / 127.5f - 1.0f, 1e-6);
  }
  EXPECT_TRUE(WritePng(v, 2, Path("bad.png")).IsInvalidArgument());
  EXPECT_EQ(Entries(), std::vector<std::string>{"one.png"});
}

TEST_F(VideoIoTest, ReadVideoRoundTripMp4) {
  const Video v = MovingGradient(3, 16, 24, 40, 3.0);
  const std::string path = Path("rt.mp4");
  ASSERT_TRUE(WriteVideo(v, path).ok());
  Result<Video> back = ReadVideo(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ShapeString(), "3x16x24x40@3fps");
  EXPECT_GT(*Psnr(*back, v), 30.0);
  // Frames must come back in order: the same video shifted by one frame scores far lower.
  Video shifted = v;
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t t = 0; t < 16; ++t) {
      for (int64_t y = 0; y < 24; ++y) {
        for (int64_t x = 0; x < 40; ++x) shifted.at(c, t, y, x) = v.at(c, (t + 1) % 16, y, x);
      }
    }
  }
  EXPECT_LT(*Psnr(*back, shifted), 25.0);

  Result<Video> first = ReadVideo(path, FirstFrames(5));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->frames, 5);
}

TEST_F(VideoIoTest, ReadVideoRoundTripWebmFractionalFpsAndGrey) {
  const Video v = MovingGradient(1, 8, 24, 40, 30000.0 / 1001.0);
  const std::string path = Path("grey.webm");
  ASSERT_TRUE(WriteVideo(v, path).ok());
  Result<Video> back = ReadVideo(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->channels, 3);
  EXPECT_EQ(back->frames, 8);
  EXPECT_NEAR(back->fps, 30000.0 / 1001.0, 1e-6);
  Video green(1, 8, 24, 40, v.fps);
  for (int64_t t = 0; t < 8; ++t) {
    for (int64_t y = 0; y < 24; ++y) {
      for (int64_t x = 0; x < 40; ++x) green.at(0, t, y, x) = back->at(1, t, y, x);
    }
  }
  EXPECT_GT(*Psnr(green, v), 30.0);
}

TEST_F(VideoIoTest, ReadErrors) {
  Result<Video> missing = ReadVideo(Path("absent.mp4"));
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();
  EXPECT_NE(missing.status().message().find("absent.mp4"), std::string::npos);

  const std::string text = Path("notes.mp4");
  std::ofstream(text) << "this is not a video, just some words\n";
  Result<Video> garbage = ReadVideo(text);
  ASSERT_FALSE(garbage.ok());
  EXPECT_TRUE(garbage.status().IsCorruption() || garbage.status().IsInvalidArgument())
      << garbage.status().ToString();
  EXPECT_NE(garbage.status().message().find("notes.mp4"), std::string::npos);

  EXPECT_TRUE(ReadVideo(dir_).status().IsInvalidArgument());
  EXPECT_TRUE(ReadVideo(text, FirstFrames(0)).status().IsInvalidArgument());
}

TEST_F(VideoIoTest, FailedWritesLeaveNoFile) {
  const Video good = MovingGradient(3, 2, 12, 20, 6.0);

  Video bad = good;
  bad.data[7] = std::nanf("");
  EXPECT_TRUE(WriteVideo(bad, Path("nan.mp4")).IsInvalidArgument());
  EXPECT_TRUE(WriteVideo(Video(), Path("empty.webm")).IsInvalidArgument());
  EXPECT_TRUE(WriteVideo(good, Path("q.mp4"), WithCrf(99)).IsInvalidArgument());
  EXPECT_TRUE(WriteVideo(good, Path("s.mp4"), Scaled(0)).IsInvalidArgument());
  EXPECT_TRUE(WriteVideo(good, Path("clip.avi")).IsInvalidArgument());

  Status no_dir = WriteVideo(good, Path("no/such/dir/clip.mp4"));
  EXPECT_EQ(no_dir.code(), Status::Code::kIOError) << no_dir.ToString();
  // Not writable even by root.
  Status proc = WriteVideo(good, "/proc/vidfarm_clip.mp4");
  EXPECT_EQ(proc.code(), Status::Code::kIOError) << proc.ToString();

  // The encode succeeds but the final rename cannot replace a non-empty directory: the temporary
  // file must be cleaned up and the directory left alone.
  fs::create_directories(Path("taken.gif/inside"));
  Status taken = WriteVideo(good, Path("taken.gif"));
  EXPECT_EQ(taken.code(), Status::Code::kIOError) << taken.ToString();
  EXPECT_TRUE(fs::is_directory(Path("taken.gif/inside")));

  EXPECT_EQ(Entries(), std::vector<std::string>{"taken.gif"});
}

TEST_F(VideoIoTest, OverwriteReplacesWholeFile) {
  const std::string path = Path("clip.mp4");
  ASSERT_TRUE(WriteVideo(MovingGradient(3, 16, 24, 40, 3.0), path).ok());
  ASSERT_TRUE(WriteVideo(MovingGradient(3, 4, 24, 40, 3.0), path).ok());
  EXPECT_EQ(RunFfprobe(path).frames, 4);
  EXPECT_EQ(Entries(), std::vector<std::string>{"clip.mp4"});
}

}  // namespace
}  // namespace vidfarm
