// The playground's code editor: CodeMirror 6 with the highlighting for each
// language the code interpreter runs, following the system's light/dark
// setting.
import { EditorState, Compartment, Prec } from '@codemirror/state'
import { EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection } from '@codemirror/view'
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands'
import { bracketMatching, defaultHighlightStyle, HighlightStyle, indentOnInput, StreamLanguage, syntaxHighlighting } from '@codemirror/language'
import { python } from '@codemirror/lang-python'
import { javascript } from '@codemirror/lang-javascript'
import { shell } from '@codemirror/legacy-modes/mode/shell'
import { r } from '@codemirror/legacy-modes/mode/r'
import { tags as t } from '@lezer/highlight'

const languages = {
  python: () => python(),
  javascript: () => javascript(),
  typescript: () => javascript({ typescript: true }),
  bash: () => StreamLanguage.define(shell),
  r: () => StreamLanguage.define(r),
}

const darkHighlight = HighlightStyle.define([
  { tag: t.keyword, color: '#ff7b72' },
  { tag: [t.string, t.special(t.string)], color: '#a5d6ff' },
  { tag: [t.number, t.bool, t.null, t.atom], color: '#79c0ff' },
  { tag: t.comment, color: '#8b949e', fontStyle: 'italic' },
  { tag: [t.function(t.variableName), t.function(t.propertyName)], color: '#d2a8ff' },
  { tag: [t.definition(t.variableName), t.className, t.typeName], color: '#ffa657' },
  { tag: t.operator, color: '#ff7b72' },
  { tag: t.propertyName, color: '#79c0ff' },
])

const dark = () => window.matchMedia('(prefers-color-scheme: dark)').matches

/** Makes an editor in parent; onRun is bound to Ctrl/Cmd+Enter. */
export function createEditor(parent, { doc, language, onRun, onChange }) {
  const lang = new Compartment()
  const look = new Compartment()
  const lookFor = () => (dark() ? syntaxHighlighting(darkHighlight) : syntaxHighlighting(defaultHighlightStyle))
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        lineNumbers(),
        highlightActiveLineGutter(),
        highlightActiveLine(),
        drawSelection(),
        history(),
        indentOnInput(),
        bracketMatching(),
        Prec.highest(keymap.of([{ key: 'Mod-Enter', run: () => (onRun(), true) }])),
        keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
        lang.of(languages[language]()),
        look.of(lookFor()),
        EditorView.contentAttributes.of({ 'aria-label': 'Code editor' }),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) onChange?.(u.state.doc.toString())
        }),
      ],
    }),
  })
  const mq = window.matchMedia('(prefers-color-scheme: dark)')
  const relook = () => view.dispatch({ effects: look.reconfigure(lookFor()) })
  mq.addEventListener('change', relook)
  return {
    view,
    get code() {
      return view.state.doc.toString()
    },
    set code(text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } })
    },
    setLanguage(name) {
      view.dispatch({ effects: lang.reconfigure(languages[name]()) })
    },
    focus() {
      view.focus()
    },
    destroy() {
      mq.removeEventListener('change', relook)
      view.destroy()
    },
  }
}
