"""The one translation catalogue of the dashboard and the report files: message id -> {"vi": ..., "en": ...}.

Vietnamese is the default; English is chosen with the `lang` cookie (/lang/en).
Every label on every page goes through `t`; tests/test_web_dashboard.py checks that
every id used in the templates and in broker/web exists in both languages.
"""
from __future__ import annotations

LANGS = ("vi", "en")
DEFAULT_LANG = "vi"

CATALOGUE: dict[str, dict[str, str]] = {
    # chrome
    "app.title": {"vi": "Đánh giá mức độ hài lòng", "en": "Citizen satisfaction"},
    "nav.overview": {"vi": "Tổng quan", "en": "Overview"},
    "nav.officers": {"vi": "Cán bộ", "en": "Officers"},
    "nav.devices": {"vi": "Quầy và thiết bị", "en": "Counters and devices"},
    "nav.misuse": {"vi": "Bấm bất thường", "en": "Misuse"},
    "nav.reports": {"vi": "Báo cáo", "en": "Reports"},
    "nav.logout": {"vi": "Đăng xuất", "en": "Log out"},
    "nav.province": {"vi": "Các trung tâm", "en": "Centres"},
    "nav.users": {"vi": "Người dùng", "en": "Users"},
    "users.title": {"vi": "Người dùng và mã truy cập", "en": "Users and tokens"},
    "users.note": {"vi": "Mỗi người dùng hoặc mã truy cập chỉ thấy các trung tâm được chọn.",
                   "en": "Each user or token sees only the centres chosen for it."},
    "users.name": {"vi": "Tên", "en": "Name"},
    "users.kind": {"vi": "Loại", "en": "Kind"},
    "users.kind_user": {"vi": "người dùng", "en": "user"},
    "users.kind_token": {"vi": "mã truy cập", "en": "token"},
    "users.role": {"vi": "Vai trò", "en": "Role"},
    "users.sites": {"vi": "Trung tâm được xem", "en": "Centres it sees"},
    "users.save": {"vi": "Lưu", "en": "Save"},
    "users.saved": {"vi": "Đã lưu:", "en": "Saved:"},
    "users.bad": {"vi": "Không lưu được:", "en": "Not saved:"},
    "site.label": {"vi": "Trung tâm", "en": "Centre"},
    "site.all": {"vi": "Tất cả trung tâm", "en": "All centres"},
    "site.go": {"vi": "Xem", "en": "Show"},
    "province.title": {"vi": "Xếp hạng các trung tâm", "en": "Centres ranked"},
    "province.centre": {"vi": "Trung tâm", "en": "Centre"},
    "province.online": {"vi": "Thiết bị trực tuyến", "en": "Devices online"},
    "province.trend": {"vi": "Xu hướng", "en": "Trend"},
    "province.empty": {"vi": "Chưa có đánh giá nào trong kỳ này.", "en": "No ratings in this period."},
    "province.no_show_share": {"vi": "Tỷ lệ vắng mặt", "en": "No-show share"},
    "province.download": {"vi": "Tải báo cáo theo trung tâm", "en": "Download the report by centre"},
    "nav.signed_in_as": {"vi": "Đăng nhập:", "en": "Signed in as"},
    "lang.vi": {"vi": "Tiếng Việt", "en": "Tiếng Việt"},
    "lang.en": {"vi": "English", "en": "English"},
    "role.admin": {"vi": "quản trị", "en": "admin"},
    "role.manager": {"vi": "quản lý", "en": "manager"},
    "role.viewer": {"vi": "xem", "en": "viewer"},
    "role.display": {"vi": "màn hình sảnh", "en": "hall display"},
    # login
    "login.title": {"vi": "Đăng nhập", "en": "Sign in"},
    "login.user": {"vi": "Tên đăng nhập", "en": "User name"},
    "login.password": {"vi": "Mật khẩu", "en": "Password"},
    "login.submit": {"vi": "Đăng nhập", "en": "Sign in"},
    "login.wrong": {"vi": "Sai tên đăng nhập hoặc mật khẩu.", "en": "Wrong user name or password."},
    "login.locked": {"vi": "Tài khoản tạm khoá do nhập sai nhiều lần. Thử lại sau {until}.",
                     "en": "Account locked after too many failed attempts. Try again after {until}."},
    "login.expired": {"vi": "Phiên làm việc đã hết hạn, vui lòng tải lại trang và thử lại.",
                      "en": "The form expired; reload the page and try again."},
    "error.csrf": {"vi": "Yêu cầu không hợp lệ (thiếu mã bảo vệ). Tải lại trang và thử lại.",
                   "en": "Invalid request (missing protection token). Reload the page and try again."},
    "error.forbidden": {"vi": "Bạn không có quyền thực hiện thao tác này.",
                        "en": "You are not allowed to do this."},
    "error.not_found": {"vi": "Không tìm thấy.", "en": "Not found."},
    "error.title": {"vi": "Lỗi", "en": "Error"},
    "error.back": {"vi": "Quay lại", "en": "Back"},
    # overview
    "overview.title": {"vi": "Tổng quan", "en": "Overview"},
    "period.today": {"vi": "Hôm nay", "en": "Today"},
    "period.week": {"vi": "Tuần này", "en": "This week"},
    "period.month": {"vi": "Tháng này", "en": "This month"},
    "period.this_month": {"vi": "Tháng này", "en": "This month"},
    "period.last_month": {"vi": "Tháng trước", "en": "Last month"},
    "period.label": {"vi": "Kỳ", "en": "Period"},
    "period.show": {"vi": "Xem", "en": "Show"},
    "fig.ratings": {"vi": "Lượt đánh giá", "en": "Ratings"},
    "fig.rate": {"vi": "Tỷ lệ hài lòng", "en": "Satisfaction rate"},
    "fig.index": {"vi": "Chỉ số hài lòng", "en": "Satisfaction index"},
    "fig.wilson": {"vi": "Cận dưới Wilson", "en": "Wilson lower bound"},
    "fig.flagged": {"vi": "Bị đánh dấu", "en": "Flagged"},
    "fig.mean": {"vi": "Điểm trung bình", "en": "Mean score"},
    "fig.served": {"vi": "Lượt phục vụ", "en": "Served"},
    "fig.rank": {"vi": "Hạng", "en": "Rank"},
    "fig.name": {"vi": "Họ tên", "en": "Name"},
    "fig.levels": {"vi": "Phân bố mức đánh giá", "en": "Ratings per level"},
    "fig.count": {"vi": "Số lượt", "en": "Count"},
    "fig.none": {"vi": "—", "en": "—"},
    "live.title": {"vi": "Đánh giá mới nhất", "en": "Latest ratings"},
    "live.empty": {"vi": "Chưa có đánh giá nào.", "en": "No ratings yet."},
    "live.counter": {"vi": "Quầy", "en": "Counter"},
    "flag.repeat": {"vi": "bấm lặp", "en": "repeat"},
    "flag.chord": {"vi": "bấm nhiều nút", "en": "several buttons"},
    "unattributed": {"vi": "(không rõ)", "en": "(unknown)"},
    # officers
    "officers.title": {"vi": "Xếp hạng cán bộ", "en": "Officer ranking"},
    "officers.empty": {"vi": "Chưa có đánh giá trong kỳ này.", "en": "No ratings in this period."},
    "officers.note": {"vi": "Xếp hạng theo cận dưới Wilson 95% của tỷ lệ hài lòng; lượt bị đánh dấu không được tính.",
                      "en": "Ranked by the 95% Wilson lower bound of the satisfaction rate; flagged presses are not counted."},
    "officer.title": {"vi": "Cán bộ", "en": "Officer"},
    "officer.trend": {"vi": "Diễn biến theo ngày", "en": "Daily trend"},
    "officer.reasons": {"vi": "Lý do chưa hài lòng", "en": "Reasons for low ratings"},
    "officer.no_reasons": {"vi": "Không có lý do nào được chọn.", "en": "No reasons given."},
    "officer.reason": {"vi": "Lý do", "en": "Reason"},
    "officer.calls": {"vi": "Lượt gọi số", "en": "Queue calls"},
    "officer.counters": {"vi": "Các quầy đã làm việc", "en": "Counters worked"},
    "officer.day": {"vi": "Ngày", "en": "Day"},
    "officer.back": {"vi": "← Danh sách cán bộ", "en": "← All officers"},
    "action.next": {"vi": "Gọi số tiếp", "en": "Next"},
    "action.recall": {"vi": "Gọi lại", "en": "Recall"},
    "action.close": {"vi": "Đóng quầy", "en": "Close"},
    "action.noshow": {"vi": "Vắng mặt", "en": "No-show"},
    # devices
    "devices.title": {"vi": "Quầy và thiết bị", "en": "Counters and devices"},
    "devices.device": {"vi": "Thiết bị", "en": "Device"},
    "devices.counter": {"vi": "Quầy", "en": "Counter"},
    "devices.status": {"vi": "Trạng thái", "en": "Status"},
    "devices.online": {"vi": "Trực tuyến", "en": "Online"},
    "devices.offline": {"vi": "Mất kết nối", "en": "Offline"},
    "devices.unknown": {"vi": "Chưa rõ", "en": "Unknown"},
    "devices.last_seen": {"vi": "Lần cuối", "en": "Last seen"},
    "devices.backlog": {"vi": "Tồn đọng", "en": "Backlog"},
    "devices.clock": {"vi": "Đồng hồ", "en": "Clock"},
    # Votes rescued from quarantined ledgers (device/salvage.py, docs/reliability.md).
    "devices.salvage": {"vi": "Phiếu được cứu", "en": "Rescued votes"},
    "devices.salvage_figures": {"vi": "{salvaged} đã cứu · {pending} chờ gửi · {unreadable} không đọc được",
                                "en": "{salvaged} rescued · {pending} to send · {unreadable} unreadable"},
    "devices.salvage_check": {"vi": "Thay thẻ nhớ", "en": "Replace the SD card"},
    "devices.salvage_lost": {"vi": "Có phiếu không đọc được trên thẻ nhớ: phiếu đã mất.",
                             "en": "Some votes on the SD card could not be read: they are lost."},
    "devices.clock_ok": {"vi": "Đã đồng bộ", "en": "Synced"},
    "devices.clock_bad": {"vi": "Chưa đồng bộ", "en": "Not synced"},
    "devices.fw": {"vi": "Phần mềm", "en": "Firmware"},
    # Fleet updates: the last step of a counter's last update (docs/updates.md).
    "devices.update_downloading": {"vi": "đang tải", "en": "downloading"},
    "devices.update_installing": {"vi": "đang cài", "en": "installing"},
    "devices.update_staged": {"vi": "chờ lúc rảnh", "en": "waiting for an idle moment"},
    "devices.update_pending": {"vi": "đang thử", "en": "on probation"},
    "devices.update_committed": {"vi": "đã xác nhận", "en": "committed"},
    "devices.update_rolled_back": {"vi": "đã quay lại bản cũ", "en": "rolled back"},
    "devices.update_refused": {"vi": "bị từ chối", "en": "refused"},
    "devices.update_failed": {"vi": "lỗi", "en": "failed"},
    "devices.unregistered": {"vi": "Chưa đăng ký", "en": "Unregistered"},
    "devices.identify": {"vi": "Nháy đèn", "en": "Identify"},
    "devices.none": {"vi": "Chưa có thiết bị nào.", "en": "No devices yet."},
    "devices.officer": {"vi": "Cán bộ đang trực", "en": "Officer on duty"},
    "devices.assign": {"vi": "Phân công cán bộ", "en": "Assign an officer"},
    "devices.assign_submit": {"vi": "Phân công", "en": "Assign"},
    "devices.nobody": {"vi": "(không ai)", "en": "(nobody)"},
    "devices.counters": {"vi": "Quầy", "en": "Counters"},
    "msg.identify_sent": {"vi": "Đã gửi lệnh nháy đèn tới {device}.", "en": "Identify sent to {device}."},
    "msg.assigned": {"vi": "Đã phân công và gửi tới quầy.", "en": "Assigned and sent to the counter."},
    "msg.assigned_not_sent": {"vi": "Đã ghi nhận, nhưng quầy chưa có thiết bị nên chưa gửi được.",
                              "en": "Recorded, but the counter has no device yet, so nothing was sent."},
    "msg.bad_request": {"vi": "Dữ liệu không hợp lệ.", "en": "Invalid input."},
    "devices.held": {"vi": "Sự kiện đang bị giữ lại (chưa tính)", "en": "Held events (not counted)"},
    "devices.held_note": {
        "vi": "Sự kiện từ thiết bị chưa đăng ký, hoặc đăng ký ở quầy khác, được lưu nhưng không tính vào kết quả "
              "cho tới khi quản trị viên duyệt. Duyệt: đăng ký thiết bị tại quầy đó và tính các sự kiện này. "
              "Loại bỏ: không bao giờ tính.",
        "en": "Events from devices that are not registered, or registered at another counter, are stored but not "
              "counted until an admin approves them. Approve: register the device at that counter and count these "
              "events. Discard: never count them."},
    "devices.held_none": {"vi": "Không có sự kiện nào đang chờ duyệt.", "en": "Nothing is waiting for approval."},
    "devices.claimed": {"vi": "Quầy ghi trong sự kiện", "en": "Counter named in the events"},
    "devices.registered_at": {"vi": "Đăng ký tại", "en": "Registered at"},
    "devices.now_at_counter": {"vi": "thiết bị hiện tại của quầy: {device}", "en": "the counter's device now: {device}"},
    "devices.events": {"vi": "Sự kiện", "en": "Events"},
    "devices.first_received": {"vi": "Nhận lần đầu", "en": "First received"},
    "devices.last_received": {"vi": "Nhận lần cuối", "en": "Last received"},
    "devices.approve": {"vi": "Duyệt", "en": "Approve"},
    "devices.discard": {"vi": "Loại bỏ", "en": "Discard"},
    "devices.confirm_approve": {
        "vi": "Duyệt thiết bị {device} tại quầy {counter}? {n} sự kiện của nó sẽ được tính.",
        "en": "Approve device {device} at counter {counter}? Its {n} events will be counted."},
    "devices.confirm_replaces": {
        "vi": "Thiết bị {device} sẽ bị huỷ đăng ký khỏi quầy này; sự kiện mới của nó sẽ không được tính.",
        "en": "Device {device} will be unregistered from this counter; what it sends from now on will not count."},
    "devices.confirm_discard": {
        "vi": "Loại bỏ {n} sự kiện của {device} (quầy {counter})? Chúng sẽ không bao giờ được tính.",
        "en": "Discard {n} events from {device} (counter {counter})? They will never be counted."},
    "msg.approved": {"vi": "Đã duyệt {device}: {n} sự kiện được tính.", "en": "Approved {device}: {n} events counted."},
    "msg.discarded": {"vi": "Đã loại bỏ {n} sự kiện của {device}; chúng sẽ không bao giờ được tính.",
                      "en": "Discarded {n} events from {device}; they will never be counted."},
    "msg.nothing_held": {"vi": "Không còn sự kiện nào của {device} đang chờ duyệt.",
                         "en": "Nothing from {device} is waiting any more."},
    # misuse
    "misuse.title": {"vi": "Bấm bất thường", "en": "Button misuse"},
    "misuse.note": {"vi": "Các lượt bấm bị đánh dấu (bấm lặp, bấm nhiều nút) được giữ riêng và không tính vào kết quả.",
                    "en": "Flagged presses (repeats, several buttons at once) are kept aside and never counted."},
    "misuse.by_counter": {"vi": "Theo quầy", "en": "By counter"},
    "misuse.by_hour": {"vi": "Theo giờ trong ngày", "en": "By hour of day"},
    "misuse.hour": {"vi": "Giờ", "en": "Hour"},
    "misuse.share": {"vi": "Tỷ lệ bị đánh dấu", "en": "Flagged share"},
    "misuse.none": {"vi": "Không có lượt bấm bất thường trong kỳ này.", "en": "No flagged presses in this period."},
    "misuse.total": {"vi": "Tổng", "en": "Total"},
    # reports
    "reports.title": {"vi": "Báo cáo tháng", "en": "Monthly reports"},
    "reports.month": {"vi": "Tháng", "en": "Month"},
    "reports.by_officer": {"vi": "Theo cán bộ", "en": "Per officer"},
    "reports.by_counter": {"vi": "Theo quầy", "en": "Per counter"},
    "reports.by_site": {"vi": "Theo trung tâm", "en": "Per centre"},
    "reports.xlsx": {"vi": "Tải Excel (XLSX)", "en": "Download Excel (XLSX)"},
    "reports.csv": {"vi": "Tải CSV", "en": "Download CSV"},
    # the hall display and the queue's waiting times
    "nav.waiting": {"vi": "Thời gian chờ", "en": "Waiting times"},
    "hall.title": {"vi": "Mời công dân", "en": "Now calling"},
    "hall.counter": {"vi": "Quầy", "en": "Counter"},
    "hall.waiting": {"vi": "Đang chờ", "en": "Waiting"},
    "hall.none": {"vi": "Chưa có số nào được gọi.", "en": "No number called yet."},
    "hall.sound": {"vi": "Bấm để bật âm thanh", "en": "Click to turn the sound on"},
    "waiting.title": {"vi": "Thời gian chờ và phục vụ", "en": "Waiting and service times"},
    "waiting.by_queue": {"vi": "Theo lĩnh vực", "en": "By queue"},
    "waiting.by_hour": {"vi": "Theo giờ lấy số", "en": "By hour the ticket was taken"},
    "waiting.queue": {"vi": "Lĩnh vực", "en": "Queue"},
    "waiting.hour": {"vi": "Giờ", "en": "Hour"},
    "waiting.tickets": {"vi": "Số phiếu", "en": "Tickets"},
    "waiting.served": {"vi": "Đã phục vụ", "en": "Served"},
    "waiting.no_show": {"vi": "Vắng mặt", "en": "No-show"},
    "waiting.mean": {"vi": "Chờ trung bình", "en": "Mean wait"},
    "waiting.p50": {"vi": "Chờ trung vị", "en": "Median wait"},
    "waiting.p90": {"vi": "90% chờ dưới", "en": "90% waited under"},
    "waiting.service": {"vi": "Phục vụ trung bình", "en": "Mean service time"},
    "waiting.rated": {"vi": "Tỷ lệ được đánh giá", "en": "Share rated"},
    "waiting.none": {"vi": "Không có phiếu nào trong kỳ này.", "en": "No tickets in this period."},
    "officer.queue": {"vi": "Phục vụ theo số thứ tự", "en": "Queue tickets served"},
    # alerts (broker/web/pages/alerts.py)
    "nav.alerts": {"vi": "Cảnh báo", "en": "Alerts"},
    "alerts.title": {"vi": "Cảnh báo", "en": "Alerts"},
    "alerts.open": {"vi": "Đang mở", "en": "Open"},
    "alerts.none": {"vi": "Không có cảnh báo nào đang mở.", "en": "No open alerts."},
    "alerts.what": {"vi": "Nội dung", "en": "What"},
    "alerts.opened": {"vi": "Bắt đầu", "en": "Opened"},
    "alerts.resolved": {"vi": "Kết thúc", "en": "Resolved"},
    "alerts.acked": {"vi": "Đã xác nhận", "en": "Acknowledged"},
    "alerts.ack": {"vi": "Xác nhận đã biết", "en": "Acknowledge"},
    "alerts.history": {"vi": "Đã kết thúc trong {days} ngày qua", "en": "Resolved in the last {days} days"},
    "alerts.history_none": {"vi": "Không có.", "en": "None."},
    "alerts.hours": {"vi": "Giờ làm việc và người nhận cảnh báo", "en": "Opening hours and alert recipients"},
    "alerts.hours_note": {
        "vi": "Cảnh báo mất kết nối chỉ tính trong giờ làm việc. Ví dụ: mon-fri 07:30-11:30,13:30-17:00; sat 07:30-11:30. "
              "Ngày nghỉ (lễ, Tết) ghi dạng 2027-02-06, cách nhau bằng dấu phẩy.",
        "en": "Offline alerts count opening hours only. E.g. mon-fri 07:30-11:30,13:30-17:00; sat 07:30-11:30. "
              "Closed days (public holidays, Tết) as 2027-02-06, separated by commas."},
    "alerts.weekly": {"vi": "Giờ làm việc", "en": "Opening hours"},
    "alerts.closed": {"vi": "Ngày nghỉ", "en": "Closed days"},
    "alerts.email_to": {"vi": "E-mail nhận cảnh báo", "en": "Alert e-mails to"},
    "alerts.default": {"vi": "mặc định của hệ thống", "en": "the service's default"},
    "alerts.save": {"vi": "Lưu", "en": "Save"},
    "alerts.no_sites": {"vi": "Chưa có điểm nào.", "en": "No sites yet."},
    "alerts.msg.acked": {"vi": "Đã ghi nhận xác nhận.", "en": "Acknowledged."},
    "alerts.msg.hours_saved": {"vi": "Đã lưu giờ làm việc.", "en": "Opening hours saved."},
    "alerts.msg.bad_hours": {"vi": "Giờ làm việc, ngày nghỉ hoặc e-mail không hợp lệ.",
                             "en": "Invalid opening hours, closed days or e-mail addresses."},
    # level labels, per scale
    "level.3.1": {"vi": "Không hài lòng", "en": "Dissatisfied"},
    "level.3.2": {"vi": "Hài lòng", "en": "Satisfied"},
    "level.3.3": {"vi": "Rất hài lòng", "en": "Very satisfied"},
    "level.4.1": {"vi": "Không hài lòng", "en": "Dissatisfied"},
    "level.4.2": {"vi": "Bình thường", "en": "Neutral"},
    "level.4.3": {"vi": "Hài lòng", "en": "Satisfied"},
    "level.4.4": {"vi": "Rất hài lòng", "en": "Very satisfied"},
    "level.5.1": {"vi": "Rất không hài lòng", "en": "Very dissatisfied"},
    "level.5.2": {"vi": "Không hài lòng", "en": "Dissatisfied"},
    "level.5.3": {"vi": "Bình thường", "en": "Neutral"},
    "level.5.4": {"vi": "Hài lòng", "en": "Satisfied"},
    "level.5.5": {"vi": "Rất hài lòng", "en": "Very satisfied"},
}


def pick_lang(code: str | None) -> str:
    return code if code in LANGS else DEFAULT_LANG


def t(msg_id: str, lang: str = DEFAULT_LANG, **fields) -> str:
    """The message in `lang`; the id itself if it is missing (the test makes sure none is)."""
    entry = CATALOGUE.get(msg_id)
    text = msg_id if entry is None else entry.get(lang) or entry[DEFAULT_LANG]
    return text.format(**fields) if fields else text


def level_label(scale: int | None, score: int | None, lang: str = DEFAULT_LANG) -> str:
    """"Hài lòng" etc. for a score on a 3-, 4- or 5-level scale; the number itself otherwise."""
    key = f"level.{scale}.{score}"
    return t(key, lang) if key in CATALOGUE else str(score)


def translator(lang: str):
    lang = pick_lang(lang)
    return lambda msg_id, **fields: t(msg_id, lang, **fields)
