-- A store written by the code before broker/store/ became a package (commit deec5bb), as
-- sqlite3's iterdump() gave it; PRAGMA user_version was 2. tests/test_broker_store.py opens it.
-- Never regenerate it with newer code: it stands for the files already out there.
-- It holds one site, two counters, two officers (one with a badge), an assignment, 11 events from
-- pi-1 (ratings, one flagged, one with a reason, one in October, calls, a sign-in re-timed by a
-- later event of its boot, a rating still on its arrival time), a dead letter, a duplicate, the
-- device's status and telemetry, and two tickets.
BEGIN TRANSACTION;
CREATE TABLE assignments (site TEXT NOT NULL, counter TEXT NOT NULL, start_ms INTEGER NOT NULL,
            officer TEXT, PRIMARY KEY (site, counter, start_ms)) WITHOUT ROWID;
INSERT INTO "assignments" VALUES('hcm','2',1732676400000,'off-2');
CREATE TABLE boot_offsets (device TEXT NOT NULL, boot TEXT NOT NULL, offset_ms REAL NOT NULL,
            ledger TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (device, boot)) WITHOUT ROWID;
INSERT INTO "boot_offsets" VALUES('pi-1','b0',1732679981000.0,'0123456789abcdef',10);
INSERT INTO "boot_offsets" VALUES('pi-1','b1',1732679999000.0,'0123456789abcdef',1);
CREATE TABLE call_days (day TEXT NOT NULL, site TEXT NOT NULL, counter TEXT NOT NULL,
            officer TEXT NOT NULL, action TEXT NOT NULL, n INTEGER NOT NULL,
            PRIMARY KEY (day, site, counter, officer, action)) WITHOUT ROWID;
INSERT INTO "call_days" VALUES('2024-11-27','hcm','1','off-1','next',1);
INSERT INTO "call_days" VALUES('2024-11-27','hcm','1','off-1','recall',1);
CREATE TABLE call_months (month TEXT NOT NULL, site TEXT NOT NULL, counter TEXT NOT NULL,
            officer TEXT NOT NULL, action TEXT NOT NULL, n INTEGER NOT NULL,
            PRIMARY KEY (month, site, counter, officer, action)) WITHOUT ROWID;
INSERT INTO "call_months" VALUES('2024-11','hcm','1','off-1','next',1);
INSERT INTO "call_months" VALUES('2024-11','hcm','1','off-1','recall',1);
CREATE TABLE counters (site TEXT NOT NULL, counter TEXT NOT NULL, name TEXT NOT NULL,
            device TEXT, PRIMARY KEY (site, counter)) WITHOUT ROWID;
INSERT INTO "counters" VALUES('hcm','1','Quầy 1','pi-1');
INSERT INTO "counters" VALUES('hcm','2','Quầy 2',NULL);
CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL,
            device TEXT NOT NULL, ledger TEXT, seq INTEGER, reason TEXT NOT NULL, payload BLOB NOT NULL);
INSERT INTO "dead_letters" VALUES(1,1732680000600,'pi-1',NULL,NULL,'invalid JSON: Expecting property name enclosed in double quotes at line 1 column 2',X'7B62726F6B656E');
CREATE TABLE devices (id TEXT PRIMARY KEY, registered INTEGER NOT NULL DEFAULT 0,
            site TEXT, counter TEXT, first_seen_ms INTEGER, last_seen_ms INTEGER, online INTEGER,
            fw TEXT, ledger TEXT, backlog INTEGER, clock_ok INTEGER, telemetry TEXT);
INSERT INTO "devices" VALUES('pi-1',1,'hcm','1',1732680000500,1732680002000,1,'1.2.0','0123456789abcdef',0,1,'{"uptime_s":12.5,"backlog":0,"clock_ok":true,"fw":"1.2.0","disk_free_mb":900,"cpu_temp_c":null,"ts":1732680000000,"ledger":"0123456789abcdef"}');
CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL, ledger TEXT NOT NULL, seq INTEGER NOT NULL,
            type TEXT NOT NULL, site TEXT NOT NULL, counter TEXT NOT NULL,
            boot TEXT NOT NULL, mono REAL NOT NULL,
            ts INTEGER NOT NULL, ts_source TEXT NOT NULL, received_ms INTEGER NOT NULL,
            day TEXT NOT NULL, officer TEXT, officer_source TEXT,
            scale INTEGER, score INTEGER, flagged INTEGER, action TEXT, reason TEXT,
            body TEXT NOT NULL);
INSERT INTO "events" VALUES(1,'pi-1','0123456789abcdef',1,'rating','hcm','1','b1',1.0,1732680000000,'device',1732680000500,'2024-11-27','off-1','event',4,4,0,NULL,NULL,'{"v":1,"type":"rating","device":"pi-1","site":"hcm","counter":"1","ledger":"0123456789abcdef","seq":1,"ts":1732680000000,"clock_ok":true,"boot":"b1","mono":1.0,"officer":"off-1","ticket":null,"score":4,"scale":4,"flags":[],"reason":null}');
INSERT INTO "events" VALUES(2,'pi-1','0123456789abcdef',2,'rating','hcm','1','b1',2.0,1732680000000,'device',1732680000500,'2024-11-27','off-1','event',4,3,0,NULL,NULL,'{"v":1,"type":"rating","device":"pi-1","site":"hcm","counter":"1","ledger":"0123456789abcdef","seq":2,"ts":1732680000000,"clock_ok":true,"boot":"b1","mono":2.0,"officer":"off-1","ticket":null,"score":3,"scale":4,"flags":[],"reason":null}');
INSERT INTO "events" VALUES(3,'pi-1','0123456789abcdef',3,'rating','hcm','1','b1',3.0,1732680000000,'device',1732680000500,'2024-11-27','off-1','event',4,1,0,NULL,'Chờ quá lâu','{"v":1,"type":"rating","device":"pi-1","site":"hcm","counter":"1","ledger":"0123456789abcdef","seq":3,"ts":1732680000000,"clock_ok":true,"boot":"b1","mono":3.0,"officer":"off-1","ticket":null,"score":1,"scale":4,"flags":[],"reason":"Chờ quá lâu"}');
INSERT INTO "events" VALUES(4,'pi-1','0123456789abcdef',4,'rating','hcm','1','b1',4.0,1732680000000,'device',1732680000500,'2024-11-27','off-1','event',4,2,1,NULL,NULL,'{"v":1,"type":"rating","device":"pi-1","site":"hcm","counter":"1","ledger":"0123456789abcdef","seq":4,"ts":1732680000000,"clock_ok":true,"boot":"b1","mono":4.0,"officer":"off-1","ticket":null,"score":2,"scale":4,"flags":["repeat"],"reason":null}');
INSERT INTO "events" VALUES(5,'pi-1','0123456789abcdef',5,'call','hcm','1','b1',5.0,1732680000000,'device',1732680000500,'2024-11-27','off-1','event',NULL,NULL,NULL,'next',NULL,'{"v":1,"type":"call","device":"pi-1","site":"hcm","counter":"1","ledger":"0123456789abcdef","seq":5,"ts":1732680000000,"clock_ok":true,"boot":"b1","mono":5.0,"officer":"off-1","ticket":null,"action":"next"}');
INSERT INTO "events" VALUES(6,'pi-1','0123456789abcdef',6,'call','hcm','1','b1',6.0,1732680000000,'device',1732680000500,'2024-11-27','off-1','event',NULL,NULL,NULL,'recall',NULL,'{"v":1,"type":"call","device":"pi-1","site":"hcm","counter":"1","ledger":"0123456789abcdef","seq":6,"ts":1732680000000,"clock_ok":true,"boot":"b1","mono":6.0,"officer":"off-1","ticket":null,"action":"recall"}');
INSERT INTO "events" VALUES(7,'pi-1','0123456789abcdef',7,'rating','hcm','2','b1',7.0,1732680000000,'device',1732680000500,'2024-11-27','off-2','assignment',4,4,0,NULL,NULL,'{"v":1,"type":"rating","device":"pi-1","site":"hcm","counter":"2","ledger":"0123456789abcdef","seq":7,"ts":1732680000000,"clock_ok":true,"boot":"b1","mono":7.0,"officer":null,"ticket":null,"score":4,"scale":4,"flags":[],"reason":null}');
INSERT INTO "events" VALUES(8,'pi-1','0123456789abcdef',8,'signin','hcm','1','b0',12.5,1732679993500,'corrected',1732680000500,'2024-11-27',NULL,NULL,NULL,NULL,NULL,NULL,NULL,'{"v":1,"type":"signin","device":"pi-1","site":"hcm","counter":"1","ledger":"0123456789abcdef","seq":8,"ts":946684812000,"clock_ok":false,"boot":"b0","mono":12.5,"officer":null,"ticket":null,"method":"central"}');
INSERT INTO "events" VALUES(9,'pi-1','0123456789abcdef',9,'rating','hcm','1','b1',9.0,1729224000000,'device',1732680000500,'2024-10-18','off-1','event',4,4,0,NULL,NULL,'{"v":1,"type":"rating","device":"pi-1","site":"hcm","counter":"1","ledger":"0123456789abcdef","seq":9,"ts":1729224000000,"clock_ok":true,"boot":"b1","mono":9.0,"officer":"off-1","ticket":null,"score":4,"scale":4,"flags":[],"reason":null}');
INSERT INTO "events" VALUES(10,'pi-1','0123456789abcdef',10,'rating','hcm','1','b0',20.0,1732680001000,'device',1732680001500,'2024-11-27','off-1','event',4,4,0,NULL,NULL,'{"v":1,"type":"rating","device":"pi-1","site":"hcm","counter":"1","ledger":"0123456789abcdef","seq":10,"ts":1732680001000,"clock_ok":true,"boot":"b0","mono":20.0,"officer":"off-1","ticket":null,"score":4,"scale":4,"flags":[],"reason":null}');
INSERT INTO "events" VALUES(11,'pi-1','0123456789abcdef',11,'rating','hcm','1','lost',3.0,1732680002000,'received',1732680002000,'2024-11-27','off-1','event',4,4,0,NULL,NULL,'{"v":1,"type":"rating","device":"pi-1","site":"hcm","counter":"1","ledger":"0123456789abcdef","seq":11,"ts":5,"clock_ok":false,"boot":"lost","mono":3.0,"officer":"off-1","ticket":null,"score":4,"scale":4,"flags":[],"reason":null}');
CREATE TABLE officers (id TEXT PRIMARY KEY, name TEXT NOT NULL, code TEXT NOT NULL,
            unit TEXT NOT NULL, badge TEXT UNIQUE);
INSERT INTO "officers" VALUES('off-1','Nguyễn Thị Lan','NTL','Tư pháp','04A1B2C3');
INSERT INTO "officers" VALUES('off-2','Trần Văn Minh','TVM','',NULL);
CREATE TABLE rating_days (day TEXT NOT NULL, site TEXT NOT NULL, counter TEXT NOT NULL,
            officer TEXT NOT NULL, scale INTEGER NOT NULL, score INTEGER NOT NULL, flagged INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (day, site, counter, officer, scale, score, flagged)) WITHOUT ROWID;
INSERT INTO "rating_days" VALUES('2024-10-18','hcm','1','off-1',4,4,0,1);
INSERT INTO "rating_days" VALUES('2024-11-27','hcm','1','off-1',4,1,0,1);
INSERT INTO "rating_days" VALUES('2024-11-27','hcm','1','off-1',4,2,1,1);
INSERT INTO "rating_days" VALUES('2024-11-27','hcm','1','off-1',4,3,0,1);
INSERT INTO "rating_days" VALUES('2024-11-27','hcm','1','off-1',4,4,0,3);
INSERT INTO "rating_days" VALUES('2024-11-27','hcm','2','off-2',4,4,0,1);
CREATE TABLE rating_months (month TEXT NOT NULL, site TEXT NOT NULL, counter TEXT NOT NULL,
            officer TEXT NOT NULL, scale INTEGER NOT NULL, score INTEGER NOT NULL, flagged INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (month, site, counter, officer, scale, score, flagged)) WITHOUT ROWID;
INSERT INTO "rating_months" VALUES('2024-10','hcm','1','off-1',4,4,0,1);
INSERT INTO "rating_months" VALUES('2024-11','hcm','1','off-1',4,1,0,1);
INSERT INTO "rating_months" VALUES('2024-11','hcm','1','off-1',4,2,1,1);
INSERT INTO "rating_months" VALUES('2024-11','hcm','1','off-1',4,3,0,1);
INSERT INTO "rating_months" VALUES('2024-11','hcm','1','off-1',4,4,0,3);
INSERT INTO "rating_months" VALUES('2024-11','hcm','2','off-2',4,4,0,1);
CREATE TABLE sites (id TEXT PRIMARY KEY, name TEXT NOT NULL, tz TEXT NOT NULL);
INSERT INTO "sites" VALUES('hcm','Trung tâm HCC Quận 1','Asia/Ho_Chi_Minh');
CREATE TABLE tickets (site TEXT NOT NULL, day TEXT NOT NULL, last INTEGER NOT NULL,
            PRIMARY KEY (site, day)) WITHOUT ROWID;
INSERT INTO "tickets" VALUES('hcm','2024-11-27',2);
CREATE TABLE totals (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO "totals" VALUES('dead_letters',1);
INSERT INTO "totals" VALUES('duplicates',1);
INSERT INTO "totals" VALUES('events',11);
INSERT INTO "totals" VALUES('rejected',1);
CREATE UNIQUE INDEX events_key ON events (device, ledger, seq);
CREATE INDEX events_unsynced ON events (device, boot) WHERE ts_source = 'received';
CREATE INDEX events_reasons ON events (officer, day) WHERE reason IS NOT NULL;
CREATE INDEX events_flagged_hours ON events (day, site, counter, ts, flagged) WHERE flagged = 1;
COMMIT;
