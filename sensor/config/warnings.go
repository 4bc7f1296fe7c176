package config

import (
	"fmt"
	"strings"
)

// Warnings lists what is valid but probably not what the operator meant, in the same
// "file:line: field: reason" form as errors. sensord logs them at start.
func (c *Config) Warnings() []string {
	var w []string
	warn := func(path, format string, args ...any) {
		w = append(w, c.Errorf(path, format, args...).Error())
	}
	if len(c.Interfaces) == 0 {
		warn("interfaces", "none: sensord counts nothing and only serves its pages")
	} else if len(c.LocalPrefixes) == 0 && len(c.LocalPrefixFiles) == 0 {
		warn("local_prefixes", "none, and no local_prefix_files: no packet has a local address, so every one is counted as neither_local")
	}
	if c.Datapath.XDPDrop {
		warn("datapath.xdp_drop", "true: every packet the XDP program counts is dropped; only for a pure mirror (SPAN/TAP) port")
	}
	for i, t := range c.Tables {
		if cc := t.Labels.Country; isCountryCode(cc) && !knownCountry(cc) {
			warn(fmt.Sprintf("tables[%d].labels.country", i), "%s", unknownCountry(cc))
		}
	}
	for i, l := range c.WatchLists {
		for j, cc := range l.Countries {
			if isCountryCode(cc) && !knownCountry(cc) {
				warn(fmt.Sprintf("watch_lists[%d].countries[%d]", i, j), "%s", unknownCountry(cc))
			}
		}
	}
	r := c.Store.Retention
	levels := []struct {
		path string
		name string
		keep int64
	}{
		{"store.retention.interval_10s", "raw intervals", int64(r.Interval)},
		{"store.retention.minute", "minute rollups", int64(r.Minute)},
		{"store.retention.hour", "hour rollups", int64(r.Hour)},
		{"store.retention.day", "day rollups", int64(r.Day)},
	}
	for i := 1; i < len(levels); i++ {
		if fine, coarse := levels[i-1], levels[i]; coarse.keep < fine.keep {
			warn(coarse.path, "the %s are kept for less time than the %s", coarse.name, fine.name)
		}
	}
	if host, bad := splitListen(c.HTTP.Listen); bad == "" && !loopback(host) {
		where := host
		if host == "" {
			where = "every address"
		}
		switch {
		case c.HTTP.BasicAuth.User == "":
			warn("http.listen", "the pages are served on %s without basic_auth", where)
		case c.HTTP.TLS.CertFile == "":
			warn("http.listen", "the password of basic_auth crosses the network in clear on %s without tls", where)
		}
	}
	return w
}

// isoCountries are the ISO 3166-1 alpha-2 codes in use, with the codes that the RIRs' and
// ip-location-db's data also use: XK (Kosovo), EU and AP (RIR regions), AN (the former
// Netherlands Antilles, still in the whois data).
const isoCountries = `AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY
HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA
LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY
MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS
RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM
TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
XK EU AP AN`

var countrySet = func() map[string]bool {
	m := map[string]bool{}
	for _, cc := range strings.Fields(isoCountries) {
		m[cc] = true
	}
	return m
}()

func knownCountry(cc string) bool { return countrySet[cc] }

func unknownCountry(cc string) string {
	if cc == "UK" {
		return `"UK" is not an ISO 3166-1 country code, so the country tables never match it (the United Kingdom is GB)`
	}
	return fmt.Sprintf("%q is not an ISO 3166-1 country code, so the country tables never match it", cc)
}
