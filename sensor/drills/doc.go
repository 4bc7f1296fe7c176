// Package drills holds the fault drills of docs/reliability.md: Go tests of
// the integration tier (root, network namespaces, real sensord processes)
// that set up a sensor under traffic, inject a fault (kill -9, a full or
// read-only data directory, a damaged store file…), check the outcome
// exactly and print one line per drill:
//
//	DRILL <name> PASS|FAIL <numbers>
//
// scripts/drills runs them and collects those lines; `make test` runs them
// with CI's sizes, `make drills` with the sizes of the record. The package
// has no code of its own: everything is in its tests.
package drills
