// tools/tokenizer_crosscheck.mjs - developer-time cross-check of the
// tokenizer fixtures against tokenizers.js, Hugging Face's own JavaScript
// port (npm package @huggingface/tokenizers), a third implementation next to
// tools/tokenizer_reference.py and the C one. Not run by make check.
//
//   npm install --prefix /tmp/tjs @huggingface/tokenizers@0.2.0
//   node tools/tokenizer_crosscheck.mjs /tmp/tjs/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs
//
// Known, explained differences (tokenizers.js 0.2.0): it ignores an added
// token's single_word flag, and its \s leaves out U+0085, which Oniguruma
// (used by the Rust library) counts as a space.
import fs from "fs";
import path from "path";
import { pathToFileURL, fileURLToPath } from "url";

const mod = await import(pathToFileURL(process.argv[2]).href);
const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "tests", "fixtures", "tokenizers");
let failures = 0;
for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".expected.json")).sort()) {
  const exp = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"));
  const tok = new mod.Tokenizer(JSON.parse(fs.readFileSync(path.join(dir, exp.tokenizer), "utf8")), {});
  let bad = 0;
  for (const c of exp.cases) {
    const ids = tok.encode(c.text, { add_special_tokens: false }).ids;
    let ok = JSON.stringify(ids) === JSON.stringify(c.ids);
    if (ok && c.ids.length) {
      ok = tok.decode(c.ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }) === c.decoded
        && tok.decode(c.ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }) === c.decoded_skip_special;
    }
    if (!ok) {
      bad++;
      console.log(`${f}: differs on ${JSON.stringify(c.text)}: ${JSON.stringify(ids)} vs ${JSON.stringify(c.ids)}`);
    }
  }
  console.log(`${f}: ${exp.cases.length - bad} of ${exp.cases.length} cases agree`);
  failures += bad;
}
process.exit(failures ? 1 : 0);
