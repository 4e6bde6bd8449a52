//! The admin console in a real browser: Debian's headless Chromium driven
//! through WebDriver by Python's selenium (Debian's python3-selenium and
//! chromium-driver, which tests/run installs: a client nobody here wrote,
//! the browser an administrator uses). Log in, read the dashboard, add a
//! reject entry (and see that sender's mail refused), search the greylist,
//! follow a session from the log search to its trail, flush the update queue, reload from Apply, log out; a screenshot of
//! every page goes to
//! `target/console-screenshots/` (not committed).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use postern_tests::*;

/// The walk, in selenium: argv = base URL, screenshot directory. Prints
/// one line per check.
const WALK: &str = r#"
import os, sys, tempfile
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

base, shots = sys.argv[1], sys.argv[2]
os.makedirs(shots, exist_ok=True)
opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1200,900", "--user-data-dir=" + tempfile.mkdtemp()]:
    opts.add_argument(flag)
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
d.set_page_load_timeout(30)
# A click returns before the page it leads to has loaded: wait for it.
def at(path, heading):
    WebDriverWait(d, 20).until(
        lambda d: d.current_url == base + path
        and any(h.text == heading for h in d.find_elements(By.TAG_NAME, "h1")))
try:
    d.get(base + "/dashboard")
    print("redirected to login:", d.current_url == base + "/")
    d.save_screenshot(os.path.join(shots, "1-login.png"))
    d.find_element(By.NAME, "user").send_keys("admin")
    d.find_element(By.NAME, "password").send_keys("s3cret")
    d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    at("/dashboard", "Dashboard")
    print("dashboard:", d.current_url == base + "/dashboard", d.find_element(By.TAG_NAME, "h1").text)
    print("workers shown:", "postern-router" in d.find_element(By.TAG_NAME, "pre").text)
    print("cookie hidden from scripts:", d.execute_script("return document.cookie") == "")
    d.save_screenshot(os.path.join(shots, "2-dashboard.png"))
    d.find_element(By.LINK_TEXT, "Statistics").click()
    at("/stats", "Statistics")
    print("charts:", len(d.find_elements(By.CSS_SELECTOR, "figure svg")))
    d.save_screenshot(os.path.join(shots, "2b-statistics.png"))
    # A reject entry, typed into the access lists' form.
    d.find_element(By.LINK_TEXT, "Access lists").click()
    at("/access", "Access lists")
    Select(d.find_element(By.NAME, "action")).select_by_value("reject")
    Select(d.find_element(By.NAME, "method")).select_by_value("from")
    d.find_element(By.NAME, "pattern").send_keys("spam@bad.test")
    d.find_element(By.NAME, "comment").send_keys("seen in the browser test")
    d.find_element(By.XPATH, "//button[text()='Add']").click()
    WebDriverWait(d, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "p.ok"))
    print("access:", d.find_element(By.CSS_SELECTOR, "p.ok").text)
    row = d.find_element(By.XPATH, "//tr[td/code[text()='spam@bad.test']]")
    print("row:", " | ".join(td.text for td in row.find_elements(By.TAG_NAME, "td")[:4]))
    d.save_screenshot(os.path.join(shots, "3-access.png"))
    # The greylist: a search for the sender the test greylisted.
    d.find_element(By.LINK_TEXT, "Greylisting").click()
    at("/greylist", "Greylisting")
    d.find_element(By.NAME, "q").send_keys("other.example")
    d.find_element(By.XPATH, "//button[text()='Search']").click()
    WebDriverWait(d, 20).until(lambda d: "q=other.example" in d.current_url and "Search results" in d.page_source)
    cells = d.find_elements(By.XPATH, "//h2[text()='Search results']/following-sibling::table[1]//td")
    print("greylist:", " ".join(c.text for c in cells[:4]))
    d.save_screenshot(os.path.join(shots, "4-greylist.png"))
    # The log search, then a click through to that session's trail.
    d.find_element(By.LINK_TEXT, "Logs").click()
    at("/logs", "Logs")
    d.find_element(By.NAME, "q").send_keys("c@other.example")
    d.find_element(By.XPATH, "//button[text()='Search']").click()
    WebDriverWait(d, 20).until(lambda d: "1 session(s)." in d.page_source)
    d.save_screenshot(os.path.join(shots, "5-logs.png"))
    link = d.find_element(By.CSS_SELECTOR, "td a code")
    sid = link.text
    link.click()
    WebDriverWait(d, 20).until(lambda d: "/logs/session?sid=" in d.current_url and "newest first" in d.page_source)
    trail = d.find_element(By.CSS_SELECTOR, "pre.trail").text.splitlines()
    print("trail:", d.find_element(By.TAG_NAME, "h1").text == "Session " + sid,
          "disconnect from 127.0.0.7" in trail[0], "accepted connection from 127.0.0.7" in trail[-1])
    d.save_screenshot(os.path.join(shots, "6-session.png"))
    # The other pages, each from the menu, each with its screenshot.
    for name, path, shot in [("Routing", "/routing", "6b-routing.png"),
                             ("MX check", "/mx", "6c-mx.png"),
                             ("Refused mail", "/refused", "6d-refused.png")]:
        d.find_element(By.LINK_TEXT, name).click()
        at(path, name)
        d.save_screenshot(os.path.join(shots, shot))
    print("refused:", "c@other.example" in d.find_element(By.TAG_NAME, "table").text)
    d.find_element(By.LINK_TEXT, "Update queue").click()
    at("/queue", "Update queue")
    d.find_element(By.XPATH, "//button[text()='Try every deferred copy now']").click()
    WebDriverWait(d, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "p.ok"))
    print("flush:", d.find_element(By.CSS_SELECTOR, "p.ok").text)
    d.save_screenshot(os.path.join(shots, "7-queue.png"))
    d.find_element(By.LINK_TEXT, "Apply").click()
    at("/apply", "Apply")
    d.find_element(By.XPATH, "//button[text()='Reload the configuration']").click()
    WebDriverWait(d, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "p.ok"))
    print("apply:", d.find_element(By.CSS_SELECTOR, "p.ok").text)
    d.save_screenshot(os.path.join(shots, "8-apply.png"))
    d.find_element(By.XPATH, "//button[text()='Log out']").click()
    at("/", "Log in")
    print("logged out:", d.current_url == base + "/", len(d.find_elements(By.NAME, "password")) == 1)
    d.get(base + "/dashboard")
    at("/", "Log in")
    print("dashboard after log-out:", d.current_url == base + "/")
finally:
    d.quit()
"#;

#[test]
fn an_administrator_walks_the_console_in_chromium() {
    let one = RecordingBackend::start();
    let web = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), closed_port());
    let dir = TempDir::new("browser");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"])).replace(
        "hostname = ",
        "admin_user = \"admin\"\nadmin_password = \"s3cret\"\nhostname = ",
    ) + &format!(
        "\n[web]\nlisten = [\"{web}\"]\n\n[policy]\nskip_networks = []\n\n[greylist]\nenabled = true\n\n[log]\nfile = \"{}\"\n",
        dir.path("postern-file.log").display()
    );
    let p = Postern::start(dir, &conf);
    // A triplet waiting in the greylist, for the search.
    let (out, _) = swaks(
        p.addr,
        &[
            "--local-interface",
            "127.0.0.7",
            "--from",
            "c@other.example",
            "--to",
            "w@one.test",
        ],
    );
    assert!(out.contains("<** 451 4.7.1"), "{out}");
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    // Debian's Python: python3-selenium is installed for it (a python3
    // earlier in PATH, pyenv's say, would not have it).
    let run = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            WALK,
            &format!("http://{web}"),
            shots.to_str().expect("utf8"),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("/usr/bin/python3 (tests/run installs python3-selenium)");
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "redirected to login: True",
            "dashboard: True Dashboard",
            "workers shown: True",
            "cookie hidden from scripts: True",
            "charts: 4",
            "access: Added: reject from spam@bad.test.",
            "row: from | spam@bad.test | seen in the browser test | ",
            "greylist: pending 127.0.0.0/24 c@other.example w@one.test",
            "trail: True True True",
            "refused: True",
            "flush: 0 deferred copies will be tried now.",
            "apply: Configuration reloaded.",
            "logged out: True True",
            "dashboard after log-out: True",
        ],
        "{out}"
    );
    p.wait_log("console login by admin from 127.0.0.1");
    p.wait_log("reload requested by postern-web (console:admin@127.0.0.1)");
    // The entry added in the browser refuses that sender's mail.
    let (out, ok) = swaks(p.addr, &["--from", "spam@bad.test", "--to", "u@one.test"]);
    assert!(
        !ok && out.contains("<** 554 5.7.1 <spam@bad.test>: Sender address rejected"),
        "{out}"
    );
    for shot in [
        "1-login.png",
        "2-dashboard.png",
        "2b-statistics.png",
        "3-access.png",
        "4-greylist.png",
        "5-logs.png",
        "6-session.png",
        "6b-routing.png",
        "6c-mx.png",
        "6d-refused.png",
        "7-queue.png",
        "8-apply.png",
    ] {
        let len = std::fs::metadata(shots.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "{shot}: {len} bytes");
    }
}
