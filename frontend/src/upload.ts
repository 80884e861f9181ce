// Uploads into the session's shell (`POST api/upload?session=&name=`): files dropped on the
// terminal or picked, one at a time, with a progress bar and the server's errors in words.

import { apiUrl, errorText } from './api';

/** What the person reads for a failed upload of `name` with this status and body. */
export function uploadError(name: string, status: number, body: string): string {
  const said = errorText(status, body);
  switch (status) {
    case 0:
      return `Upload of ${name} failed: the connection was lost`;
    case 413:
      return `${name} is too large to upload (${said})`;
    case 409:
      return `Not uploaded: ${said}`;
    case 507:
      return `Not uploaded, no space left: ${said}`;
    default:
      return `Upload of ${name} failed: ${said}`;
  }
}

export interface UploadUi {
  session(): string | null;
  progress(name: string, fraction: number | null): void;
  done(text: string, isError: boolean): void;
}

/** Sends one file; resolves with the server's message for people. */
export function uploadFile(file: File, session: string, ui: UploadUi): Promise<void> {
  const q = new URLSearchParams({ session, name: file.name });
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `${apiUrl(window.location.pathname, 'upload')}?${q.toString()}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.onprogress = (ev) => ui.progress(file.name, ev.lengthComputable ? ev.loaded / ev.total : null);
    xhr.onload = () => {
      if (xhr.status === 201) {
        let path = file.name;
        try {
          path = (JSON.parse(xhr.responseText) as { path?: string }).path ?? path;
        } catch {
          /* keep the name */
        }
        ui.done(`Uploaded ${path}`, false);
      } else ui.done(uploadError(file.name, xhr.status, xhr.responseText), true);
      resolve();
    };
    xhr.onerror = () => {
      ui.done(uploadError(file.name, 0, ''), true);
      resolve();
    };
    ui.progress(file.name, 0);
    xhr.send(file);
  });
}

/** Uploads the files one after another. */
export async function uploadAll(files: Iterable<File>, ui: UploadUi): Promise<void> {
  for (const f of files) {
    const session = ui.session();
    if (session === null) {
      ui.done('Not uploaded: no session is connected', true);
      return;
    }
    await uploadFile(f, session, ui);
  }
}

/** Drops on `target` and picks from `picker` upload through `ui`. */
export function setupUploads(target: HTMLElement, picker: HTMLInputElement, ui: UploadUi): void {
  target.addEventListener('dragover', (ev) => {
    if (!ev.dataTransfer?.types.includes('Files')) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = 'copy';
    target.classList.add('drop-target');
  });
  target.addEventListener('dragleave', () => target.classList.remove('drop-target'));
  target.addEventListener('drop', (ev) => {
    target.classList.remove('drop-target');
    if (!ev.dataTransfer?.files.length) return;
    ev.preventDefault();
    void uploadAll(Array.from(ev.dataTransfer.files), ui);
  });
  picker.addEventListener('change', () => {
    const files = Array.from(picker.files ?? []);
    picker.value = '';
    void uploadAll(files, ui);
  });
}
