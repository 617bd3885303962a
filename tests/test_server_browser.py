"The chat page at `/` in headless Chromium: type a message, see the answer stream in from the OpenAI route."
import shutil, tempfile
import pytest
from qllama.engine import Engine
from qllama.load import load
from qllama.server import Limits, ServerThread, create_app

webdriver = pytest.importorskip('selenium.webdriver')
openai = pytest.importorskip('openai')
CHROMIUM, DRIVER = shutil.which('chromium'), shutil.which('chromedriver')
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver")

@pytest.fixture(scope='module')
def server():
    model = load('smollm2-demo', progress=False)
    with ServerThread(create_app(Engine(model, max_batch=2, max_total_tokens=128), 'smollm2-demo',
                                 Limits(max_input_length=96, max_total_tokens=128), api_key='k3y')) as s:
        yield s

@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts, profile = Options(), tempfile.mkdtemp()
    opts.binary_location = CHROMIUM
    for a in ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
              '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', f'--user-data-dir={profile}']:
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield d
    d.quit(); shutil.rmtree(profile, ignore_errors=True)

def test_chat_page_streams_an_answer(server, browser):
    "Type a message, press Enter: the reply appears piece by piece and equals the route's own greedy answer."
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(server.url + '/')
    assert browser.title == 'qllama chat'
    browser.find_element(By.TAG_NAME, 'summary').click()
    browser.find_element(By.ID, 'key').send_keys('k3y')
    browser.find_element(By.ID, 'max_tokens').send_keys('6')
    browser.find_element(By.ID, 'temperature').send_keys('0')
    # count the reply's updates: a streamed answer changes the page once per chunk, not once at the end
    browser.execute_script("window.updates = 0; new MutationObserver(() => window.updates++)"
                           ".observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});")
    browser.find_element(By.ID, 'msg').send_keys('What is the capital of France?', Keys.ENTER)
    done = WebDriverWait(browser, 600).until(lambda d: d.find_elements(By.CSS_SELECTOR, '.assistant.done'))
    reply = done[0].text
    assert 'error' not in done[0].get_attribute('class'), reply
    assert browser.find_element(By.CSS_SELECTOR, '.user').text == 'What is the capital of France?'
    want = openai.OpenAI(base_url=server.url + '/v1', api_key='k3y', timeout=600).chat.completions.create(
        model='smollm2-demo', messages=[{'role': 'user', 'content': 'What is the capital of France?'}], max_tokens=6, temperature=0)
    assert reply == want.choices[0].message.content.strip()   # the page shows the text; the DOM trims its edges
    assert browser.execute_script('return window.updates') >= 3  # user bubble, empty reply, then several chunks
