package web

import "github.com/peerwatch/peerwatch/sensor/human"

// Numbers for humans, as sensorctl writes them too.
var (
	groupDigits = human.GroupDigits
	groupFloat  = human.GroupFloat
	fmtPPS      = human.PPS
	fmtBPS      = human.BPS
	fmtBytes    = human.Bytes
	fmtIEC      = human.IEC
	fmtDuration = human.Duration
	percent     = human.Percent
	fmtPercent  = human.PercentOf
)
