// meterstream: exactly-once, event-time stream processing, embedded in your
// C++17 program. This umbrella header is the only include a pipeline needs.
//
//   #include <meterstream/meterstream.hpp>
//   namespace ms = meterstream;
//   using namespace std::chrono_literals;
//
//   ms::Pipeline p;
//   auto per_minute =
//       p.source(ms::smart_meter_source(ms::SmartMeterWorkload{}))           // or from_vector, file_source
//           .with_watermarks(ms::bounded_out_of_orderness(5min),            // event time + watermarks
//                            &ms::MeterReading::ts_ms)
//           .key_by(&ms::MeterReading::meter_id)                             // repartition by key
//           .window(ms::tumbling(1min))                                      // or sliding(), session()
//           .allowed_lateness(30s)
//           .aggregate(Usage{});                                             // create/add/merge/result
//   per_minute.late().sink(ms::file_sink<ms::MeterReading>("late.csv", to_csv));
//   per_minute.sink(ms::collect_into(results));
//   ms::Status s = p.run();                                                  // or build() -> Job
//
// The pieces, each documented in its header:
//   api/pipeline.hpp          Pipeline, SourceStream (sources, build, run)
//   api/stream.hpp            Stream<T>: map, filter, flat_map, with_watermarks, key_by, rebalance,
//                             dedup_by, sink
//   api/keyed_stream.hpp      KeyedStream<K, T>: window, process, dedup_by_sequence, input
//   api/windowed_stream.hpp   WindowedStream: allowed_lateness, aggregate, reduce;
//                             what aggregate/reduce return: late(), name(), uid()
//   (handles come from the steps; keep them in `auto`, or name a keyed one
//   KeyedStream<K, T> at the cost of a std::function call per record where
//   records are partitioned and one in the keyed operator)
//   api/process_function.hpp  ProcessContext: keyed state and timers
//   window/assigners.hpp      tumbling, sliding, session
//   window/aggregate.hpp      aggregate functions, WindowResult, Count
//   time/watermark_strategy.hpp  bounded_out_of_orderness, idleness
//   state/state.hpp           ValueState, MapState, ListState, AggregatingState; state/ttl.hpp: Ttl
//   state/rocksdb_state_backend.hpp  state larger than memory, within one memory budget
//   runtime/job.hpp, options.hpp  Job, JobOptions (threads, batch size, state backend,
//                             checkpoint)
//   checkpoint/checkpoint.hpp enable_checkpointing, RestoreFrom: crash recovery, rescaling
//   checkpoint/checkpoint_storage.hpp  a local folder or S3 for checkpoints
//   connectors/...            memory, files (and the exactly-once file sink), smart-meter
//                             generator and its 26-byte codec, kafka (kafka_source,
//                             kafka_sink with exactly-once, the in-process mock cluster;
//                             kafka/kafka_json.hpp: JSON records), redis (redis_sink:
//                             idempotent upserts and alerts)
#pragma once

#include "meterstream/api/keyed_stream.hpp"
#include "meterstream/api/pipeline.hpp"
#include "meterstream/api/process_function.hpp"
#include "meterstream/api/stream.hpp"
#include "meterstream/api/temporal_join.hpp"
#include "meterstream/api/windowed_stream.hpp"
#include "meterstream/checkpoint/checkpoint.hpp"
#include "meterstream/checkpoint/checkpoint_storage.hpp"
#include "meterstream/connectors/files/files.hpp"
#include "meterstream/connectors/generator/calibration.hpp"
#include "meterstream/connectors/generator/meter_reading_codec.hpp"
#include "meterstream/connectors/generator/smart_meter.hpp"
#include "meterstream/connectors/generator/smart_meter_source.hpp"
#include "meterstream/connectors/kafka/kafka_mock_cluster.hpp"
#include "meterstream/connectors/kafka/kafka_record.hpp"
#include "meterstream/connectors/kafka/kafka_sink.hpp"
#include "meterstream/connectors/kafka/kafka_source.hpp"
#include "meterstream/connectors/memory/memory.hpp"
#include "meterstream/connectors/redis/redis_sink.hpp"
#include "meterstream/core/key_group.hpp"
#include "meterstream/core/log.hpp"
#include "meterstream/core/status.hpp"
#include "meterstream/core/time.hpp"
#include "meterstream/core/version.hpp"
#include "meterstream/runtime/job.hpp"
#include "meterstream/runtime/options.hpp"
#include "meterstream/state/rocksdb_state_backend.hpp"
#include "meterstream/state/state.hpp"
#include "meterstream/state/state_backend.hpp"
#include "meterstream/time/watermark_strategy.hpp"
#include "meterstream/window/aggregate.hpp"
#include "meterstream/window/assigners.hpp"
