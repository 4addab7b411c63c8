// Newline-delimited files: a source of lines and a sink of lines.
//
// file_source(path, parse) reads `path` line by line (one split); parse
// (std::string_view line) -> std::optional<T> decodes a line, and a line it
// rejects (nullopt) is counted and sent, as "path:line: text", to the source's
// undecodable() side output: nothing is dropped silently. A parser that
// throws fails the job with kInvalidArgument naming the operator, the file
// and the line. A missing file fails the job at start with kNotFound naming
// the path (an unreadable one with kPermissionDenied). It
// can be checkpointed: the split's position is "<byte offset>:<line number>"
// of the next line, so a restored job goes on reading where the checkpoint
// was taken (the file must not change meanwhile, except by appending).
//
// file_sink(path, format) writes format(const T&) -> std::string plus '\n' for
// every record to `path` (writers of all workers append to the one file, a
// batch at a time). A job that starts afresh creates or truncates the file; a
// job that restores a checkpoint appends to it, so that what the run before
// the restore wrote (an undecodable-lines report, say) is kept. It is not
// part of the checkpoint: the records after the restored checkpoint that the
// earlier run had written are written again (at least once; use
// exactly_once_file_sink() for exactly once), and a re-run that restores a
// finished job's last checkpoint adds nothing.
//
// exactly_once_file_sink(dir, format) writes the same lines into part files
// in the folder `dir`, published with the job's checkpoints (two-phase
// commit), so that each record is in the output exactly once across crashes
// and restores:
//   - Each worker appends to its own in-progress file,
//     "part-inprogress-w<worker>.staged", opened at the first record after
//     the previous checkpoint (no empty files).
//   - At checkpoint barrier N (SinkWriter::prepare_commit(N)) the worker
//     flushes that file and renames it to the staged
//     "part-<N, 10 digits>-w<worker>.csv.staged" ("part-0000000007-w2.csv.staged");
//     the checkpoint thread fsyncs it and the folder (SinkBase::persist())
//     before it writes the checkpoint's metadata, so the worker does not wait
//     for the disk.
//   - Once checkpoint N is complete, SinkBase::commit() renames the staged
//     files to the committed "part-<N>-w<worker>.csv" and fsyncs the folder.
//     Committing again is a no-op; a file whose staged and committed names
//     are both missing is kDataLoss.
//   - When a checkpointed job restores checkpoint N, SinkBase::recover()
//     deletes staged and in-progress files ("part-*.staged") that the
//     checkpoint does not list, and committed part files of epochs after N
//     (published by the run being restored after checkpoint N, whose
//     records the restored job writes again), then commits the ones it
//     lists.
//   - A job that starts without a checkpoint (checkpointed or not) refuses,
//     at start and before it reads a record, a folder that holds committed
//     part files (kFailedPrecondition naming the folder and a file): it
//     never deletes published output that it did not write, nor mixes a
//     second run into it. Staged and in-progress files of an earlier run,
//     never published, are deleted. So a re-run of a finished job either
//     restores its last checkpoint (RestoreFrom::latest(): nothing is left
//     to read, the output stays as it is) or is refused.
// Readers take the committed files, `dir`/*.csv, and ignore every other
// name; files that are not named like part files are never touched.
// Output is visible only once committed: with checkpointing, when the
// checkpoint that staged it is complete; without checkpointing (no barrier
// ever), the runtime stages a worker's whole output at end of input, and it is
// visible only if the runtime commits it then. `dir` is created when missing;
// a `dir` that is not a folder fails the job at start with an error naming
// it. One exactly-once sink, of one job, per folder: two would delete each
// other's files.
//
// Thread-safety: as Source and Sink.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "meterstream/runtime/operator.hpp"

namespace meterstream {

namespace detail {

// Reads a file's lines in chunks. Compiled in src/.
class LineReader {
 public:
  static StatusOr<std::unique_ptr<LineReader>> open(const std::string& path);
  virtual ~LineReader() = default;
  // Appends up to `max` lines (without '\n'); returns false at end of file.
  virtual StatusOr<bool> read_lines(std::vector<std::string>& lines, std::size_t max) = 0;
  // The number of the last line read (1-based).
  virtual std::size_t line_number() const = 0;
  // The byte offset of the next line (just after the last line read).
  virtual std::uint64_t offset() const = 0;
  // Moves to byte `offset`, which must be the start of a line (0, just after a
  // '\n', or the end of the file), with `line` lines before it (line_number()
  // becomes `line`). kInvalidArgument saying why when it is not; the reader
  // is unchanged on error.
  virtual Status seek(std::uint64_t offset, std::size_t line) = 0;
};

// A file split's position: "<byte offset>:<line number>" in decimal, the
// offset of the next line and the number of lines before it (so that
// undecodable lines keep their line numbers after a restore).
std::string encode_file_position(std::uint64_t offset, std::size_t line);
// Decodes encode_file_position()'s text; kInvalidArgument naming `split`
// when it does not decode or the reader rejects it (LineReader::seek()).
Status seek_file_position(LineReader& reader, const std::string& split, std::string_view position);

// One output file shared by the writers of all workers. Compiled in src/.
class SharedLineFile {
 public:
  // Creates or truncates `path`, or with `append` appends to it (creating
  // it when missing).
  static StatusOr<std::shared_ptr<SharedLineFile>> create(const std::string& path,
                                                          bool append = false);
  virtual ~SharedLineFile() = default;
  // Appends `text` (complete lines) atomically with respect to other writers.
  virtual Status append(const std::string& text) = 0;
  virtual Status flush() = 0;
};

// One worker's part files of exactly_once_file_sink() (see the file comment
// for names and protocol). Compiled in src/.
class StagedPartFile {
 public:
  // The writer of worker `worker` into the folder `dir` (which exists).
  static std::unique_ptr<StagedPartFile> create(std::string dir, int worker);
  virtual ~StagedPartFile() = default;
  // Appends `text` (complete lines) to the in-progress file, opening it when
  // none is open.
  virtual Status append(const std::string& text) = 0;
  // Stages what was appended since the last call as epoch `epoch`: flush and
  // rename to the staged name (persist_part_files() makes it durable). Returns the staged
  // file's name (without the folder), or "" when nothing was appended.
  // `epoch` must be >= 0 and greater than the epoch of every earlier call that
  // staged a file (kInvalidArgument / kFailedPrecondition). After an I/O error
  // every later call returns that error: the records of the failed file are
  // lost, so the job must fail and restart from a checkpoint.
  virtual StatusOr<std::string> prepare(std::int64_t epoch) = 0;
  // Closes the writer; kFailedPrecondition when records were appended after
  // the last prepare() (they would never be committed).
  virtual Status close() = 0;
};

// Creates `dir` (and its parents) when missing. kInvalidArgument naming it
// when it is empty or exists and is not a folder; kUnavailable when it
// cannot be created.
Status make_part_directory(const std::string& dir);

// SinkBase::persist() of exactly_once_file_sink(): fsyncs each staged file in
// `prepared` (its committed file when already committed), then `dir`.
Status persist_part_files(const std::string& dir, const std::vector<std::string>& prepared);

// SinkBase::commit() of exactly_once_file_sink(): renames each staged name in
// `prepared` ("" entries are skipped) to its committed name, then fsyncs
// `dir`. Already committed names are left as they are. kInvalidArgument for a
// name that is not a staged part file's, kDataLoss for one whose staged and
// committed files are both missing; the other names are committed anyway.
Status commit_part_files(const std::string& dir, const std::vector<std::string>& prepared);

// kFailedPrecondition naming `dir` and a committed part file when `dir`
// holds one (what a job that starts without a checkpoint refuses); creates
// `dir` when missing (make_part_directory()).
Status check_no_published_output(const std::string& dir);

// SinkBase::recover() of exactly_once_file_sink() (see the file comment).
Status recover_part_files(const std::string& dir, std::int64_t restored_checkpoint,
                          const std::vector<std::string>& keep);

template <typename T, typename Parse>
class FileSource final : public Source<T> {
 public:
  FileSource(std::string path, Parse parse) : path_(std::move(path)), parse_(std::move(parse)) {}
  std::string name() const override { return "file:" + path_; }
  StatusOr<std::vector<std::unique_ptr<SplitReader<T>>>> create_splits() override {
    MS_ASSIGN_OR_RETURN(auto reader, LineReader::open(path_));
    std::vector<std::unique_ptr<SplitReader<T>>> out;
    out.push_back(std::make_unique<Split>(path_, std::move(reader), parse_));
    return out;
  }

 private:
  class Split final : public SplitReader<T> {
   public:
    Split(std::string path, std::unique_ptr<LineReader> reader, Parse parse)
        : path_(std::move(path)), reader_(std::move(reader)), parse_(std::move(parse)) {}
    StatusOr<typename SplitReader<T>::Poll> poll(std::vector<T>& out, std::size_t max,
                                                 std::vector<std::string>& undecodable) override {
      lines_.clear();
      MS_ASSIGN_OR_RETURN(bool more, reader_->read_lines(lines_, max));
      const std::size_t first = reader_->line_number() - lines_.size() + 1;
      for (std::size_t i = 0; i < lines_.size(); ++i) {
        std::optional<T> v;
        // A parser that throws fails the job naming the file and the line
        // (the source head adds the operator's name).
        try {
          v = parse_(std::string_view(lines_[i]));
        } catch (const std::exception& e) {
          return parse_error(first + i, e.what());
        } catch (...) {
          return parse_error(first + i, "an exception that is not a std::exception");
        }
        if (v) {
          out.push_back(std::move(*v));
        } else {
          undecodable.push_back(path_ + ":" + std::to_string(first + i) + ": " + lines_[i]);
        }
      }
      return more ? SplitReader<T>::Poll::kMore : SplitReader<T>::Poll::kEnd;
    }
    std::string name() const override { return path_; }

    Status parse_error(std::size_t line, const char* what) const {
      return absl::InvalidArgumentError("file_source(" + path_ + "): the parser threw at " +
                                        path_ + ":" + std::to_string(line) + ": " + what);
    }

    StatusOr<std::string> position() const override {
      return encode_file_position(reader_->offset(), reader_->line_number());
    }
    Status seek(std::string_view position) override {
      return seek_file_position(*reader_, path_, position);
    }

   private:
    std::string path_;
    std::unique_ptr<LineReader> reader_;
    Parse parse_;
    std::vector<std::string> lines_;
  };

  std::string path_;
  Parse parse_;
};

// format(v) + '\n' for every record of `batch`, into `*text` (replaced).
template <typename T, typename Format>
void format_lines(const RecordBatch<T>& batch, Format& format, std::string* text) {
  text->clear();
  for (const T& v : batch.values) {
    *text += format(v);
    *text += '\n';
  }
}

template <typename T, typename Format>
class FileSink final : public Sink<T> {
 public:
  FileSink(std::string path, Format format) : path_(std::move(path)), format_(std::move(format)) {}
  std::string name() const override { return "file:" + path_; }
  StatusOr<std::unique_ptr<SinkWriter<T>>> create_writer(int, int) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!file_) {
      MS_ASSIGN_OR_RETURN(file_, SharedLineFile::create(path_, append_));
    }
    return std::unique_ptr<SinkWriter<T>>(std::make_unique<Writer>(file_, format_));
  }
  // A checkpointed job's start: a restore appends, a fresh start truncates.
  Status recover(std::int64_t restored_checkpoint, const std::vector<std::string>&) override {
    std::lock_guard<std::mutex> lock(mu_);
    append_ = restored_checkpoint > 0;
    return Status();
  }

 private:
  class Writer final : public SinkWriter<T> {
   public:
    Writer(std::shared_ptr<SharedLineFile> file, Format format)
        : file_(std::move(file)), format_(std::move(format)) {}
    Status write(const RecordBatch<T>& batch) override {
      format_lines(batch, format_, &text_);
      return file_->append(text_);
    }
    Status close() override { return file_->flush(); }

   private:
    std::shared_ptr<SharedLineFile> file_;
    Format format_;
    std::string text_;
  };

  std::string path_;
  Format format_;
  std::mutex mu_;
  bool append_ = false;
  std::shared_ptr<SharedLineFile> file_;
};

template <typename T, typename Format>
class ExactlyOnceFileSink final : public Sink<T> {
 public:
  ExactlyOnceFileSink(std::string dir, Format format)
      : dir_(std::move(dir)), format_(std::move(format)) {}
  std::string name() const override { return "exactly-once-file:" + dir_; }
  StatusOr<std::unique_ptr<SinkWriter<T>>> create_writer(int worker, int) override {
    {
      // Without checkpointing recover() is never called: the folder is
      // checked here, before any record is read, rather than at the commit
      // at end of input.
      std::lock_guard<std::mutex> lock(mu_);
      if (!checked_) MS_RETURN_IF_ERROR(check_no_published_output(dir_));
      checked_ = true;
    }
    MS_RETURN_IF_ERROR(make_part_directory(dir_));
    return std::unique_ptr<SinkWriter<T>>(
        std::make_unique<Writer>(StagedPartFile::create(dir_, worker), format_));
  }
  Status persist(const std::vector<std::string>& prepared) override {
    return persist_part_files(dir_, prepared);
  }
  Status commit(const CheckpointCommit& /*checkpoint*/,
                const std::vector<std::string>& prepared) override {
    return commit_part_files(dir_, prepared);
  }
  Status recover(std::int64_t restored_checkpoint, const std::vector<std::string>& keep) override {
    MS_RETURN_IF_ERROR(recover_part_files(dir_, restored_checkpoint, keep));
    std::lock_guard<std::mutex> lock(mu_);
    checked_ = true;
    return Status();
  }

 private:
  class Writer final : public SinkWriter<T> {
   public:
    Writer(std::unique_ptr<StagedPartFile> file, Format format)
        : file_(std::move(file)), format_(std::move(format)) {}
    Status write(const RecordBatch<T>& batch) override {
      format_lines(batch, format_, &text_);
      return file_->append(text_);
    }
    StatusOr<std::string> prepare_commit(std::int64_t epoch) override {
      return file_->prepare(epoch);
    }
    Status close() override { return file_->close(); }

   private:
    std::unique_ptr<StagedPartFile> file_;
    Format format_;
    std::string text_;
  };

  std::string dir_;
  Format format_;
  std::mutex mu_;
  bool checked_ = false;  // the folder was checked (or recovered) for this job
};

}  // namespace detail

// Lines of `path` decoded by parse(std::string_view) -> std::optional<T>.
template <typename Parse>
auto file_source(std::string path, Parse parse) {
  using T = typename std::invoke_result_t<Parse&, std::string_view>::value_type;
  return std::shared_ptr<Source<T>>(
      std::make_shared<detail::FileSource<T, Parse>>(std::move(path), std::move(parse)));
}

// Lines of `path` as strings.
inline std::shared_ptr<Source<std::string>> file_source(std::string path) {
  return file_source(std::move(path),
                     [](std::string_view line) { return std::optional<std::string>(line); });
}

// Writes format(const T&) -> std::string, one line per record, to `path`.
template <typename T, typename Format>
std::shared_ptr<Sink<T>> file_sink(std::string path, Format format) {
  return std::make_shared<detail::FileSink<T, Format>>(std::move(path), std::move(format));
}

// Writes string records, one per line, to `path`.
inline std::shared_ptr<Sink<std::string>> file_sink(std::string path) {
  return file_sink<std::string>(std::move(path), [](const std::string& s) { return s; });
}

// Writes format(const T&) -> std::string, one line per record, exactly once
// into committed part files `dir`/part-<epoch>-w<worker>.csv (see the file
// comment). Use it with checkpointing.
//
// Example (compiled and run by tests/connectors/exactly_once_file_sink_test.cpp,
// "the files.hpp example compiles and runs"):
//   using Usage = ms::WindowResult<std::uint64_t, std::int64_t>;  // meter, Wh per minute
//   readings.key_by(&Reading::meter_id)
//       .window(ms::tumbling(1min))
//       .aggregate(WattHours{})
//       .sink(ms::exactly_once_file_sink<Usage>(usage_dir, [](const Usage& u) {
//         return std::to_string(u.key) + "," + std::to_string(u.start) + "," +
//                std::to_string(u.value);
//       }));
template <typename T, typename Format>
std::shared_ptr<Sink<T>> exactly_once_file_sink(std::string dir, Format format) {
  return std::make_shared<detail::ExactlyOnceFileSink<T, Format>>(std::move(dir),
                                                                  std::move(format));
}

}  // namespace meterstream
