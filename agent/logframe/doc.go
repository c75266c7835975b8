// Package logframe is the log wire between agents and the controller:
// avocado-vt's log record and the length-prefixed frames that carry it.
//
// An agent's LogStreamer writes frames; the controller's log server and
// the runner read them. The format is upstream's: each frame is a 4-byte
// big-endian length and the JSON that Python's json.dumps writes for the
// dict of a logging.LogRecord, so that either side may be avocado-vt's
// Python. The controller imports this package without the daemon's.
//
// record.go holds LogRecord, its json.dumps encoding and the one decoder
// (tolerant as logging.makeLogRecord is); level.go maps Python's levels to
// slog's and renders asctime; frame.go reads and writes frames, FrameReader
// for a long-lived connection.
package logframe
