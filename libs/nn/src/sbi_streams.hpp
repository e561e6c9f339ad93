#pragma once
// Internal (not installed): the random streams (sim::Rng stream ids) of the SBI model's noise
// augmentation, one per use so that each draws its own noise: GatherSbiInputs draws row r's
// noise from sim::Rng(seed, r, kNoiseStreamBase + stream) with one of these as `stream`.

#include <cstdint>

namespace cubeflow::sbi {

inline constexpr uint64_t kNoiseStreamBase = 0xA0000;
inline constexpr uint64_t kValStream = 1;     ///< validation rows: one fixed realisation
inline constexpr uint64_t kTestStream = 2;    ///< test rows / evaluate --add-noise
inline constexpr uint64_t kFlowStream = 100;  ///< + draw index: flow training rows
inline constexpr uint64_t kEncStream = 1000;  ///< + 1 + epoch: encoder batches (kEncStream itself: statistics)
/// Not a noise stream: the jitter of the flow's training targets, sim::Rng(seed, epoch, this).
inline constexpr uint64_t kJitterStream = 0xB0000;

}  // namespace cubeflow::sbi
